export type { CoreServer, ImapSession } from './core.ts';
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
export { StoreNotifier } from './notifier.ts';
export { type ImapOptions, ImapService } from './server.ts';
