export { type AccountOutcome, type DeliveryInput, deliverToAccount, deliverToRecipient } from './deliver.ts';
export { createLmtpServer, type LmtpServerOptions } from './lmtp.ts';
