export {
  type AccountOutcome,
  type DeliveryInput,
  deliverToAccount,
  deliverToRecipient,
  type GeneratedMail,
  type Outbox,
} from './deliver.ts';
export {
  decryptSecret,
  encryptSecret,
  type FetchOptions,
  type FetchResult,
  fetchDueAt,
  fetchKey,
  fetchRemote,
  imapClient,
  loadImapFlow,
  watchRemote,
} from './fetch.ts';
export { createLmtpServer, type LmtpServerOptions } from './lmtp.ts';
export { type QueueOutboxOptions, queueOutbox } from './outbox.ts';
export { Pop3Client, Pop3Error } from './pop3-client.ts';
export { type VacationContext, type VacationDecision, vacationReply } from './vacation.ts';
