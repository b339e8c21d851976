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
