export { buildDsn, type DsnInput, type DsnRecipient, statusOf } from './dsn.ts';
export {
  createInboundServer,
  defaultInboundLimits,
  type InboundLimits,
  type InboundServerOptions,
} from './inbound.ts';
export { deliverOverLmtp, LmtpClient, type LmtpReply, type LmtpTarget } from './lmtp-client.ts';
export { QueueRunner, type QueueRunnerOptions } from './queue-runner.ts';
export { defaultRetryPolicy, type RetryPolicy } from './schedule.ts';
export {
  createSubmissionServer,
  defaultSubmissionLimits,
  SendLimiter,
  type SubmissionLimits,
  type SubmissionServerOptions,
} from './submission.ts';
