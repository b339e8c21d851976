export {
  bodyStructureValue,
  envelopeValue,
  type ImapValue,
  parseSection,
  partial,
  type Section,
  SectionError,
  sectionBytes,
} from './fetch-data.ts';
export { decodeMutf7, encodeMutf7, MailboxNameError } from './mutf7.ts';
