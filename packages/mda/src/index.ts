export {
  type AccountOutcome,
  type DeliveryInput,
  deliverToAccount,
  deliverToRecipient,
  type GeneratedMail,
  type Outbox,
} from './deliver.ts';
export { createLmtpServer, type LmtpServerOptions } from './lmtp.ts';
export { type QueueOutboxOptions, queueOutbox } from './outbox.ts';
export { type VacationContext, type VacationDecision, vacationReply } from './vacation.ts';
