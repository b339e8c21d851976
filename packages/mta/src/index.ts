export {
  createArcSealer,
  createDkimSigner,
  dkimRecordValue,
  type GeneratedKey,
  generateDkimKey,
  selectorFor,
} from './dkim.ts';
export { buildDsn, type DsnInput, type DsnRecipient } from './dsn.ts';
export {
  createInboundServer,
  defaultInboundLimits,
  type InboundLimits,
  type InboundServerOptions,
} from './inbound.ts';
export { deliverOverLmtp, LmtpClient, type LmtpReply, type LmtpTarget } from './lmtp-client.ts';
export {
  type CachedPolicy,
  currentPolicy,
  httpsPolicyFetcher,
  memoryPolicyCache,
  mxMatches,
  type PolicyCache,
  type PolicyFetcher,
  parseStsPolicy,
  parseStsRecord,
  type StsPolicy,
} from './mta-sts.ts';
export {
  type Dialer,
  defaultDialer,
  type MxResolver,
  OutboundDelivery,
  type OutboundMessage,
  type OutboundOptions,
  type RelayHost,
} from './outbound.ts';
export { QueueRunner, type QueueRunnerOptions } from './queue-runner.ts';
export {
  type RspamdAnswer,
  RspamdClient,
  type RspamdClientOptions,
  RspamdUnavailable,
  type ScanContext,
  type ScanVerdict,
  verdictOf,
} from './rspamd.ts';
export {
  defaultRemoteRetryPolicy,
  defaultRetryPolicy,
  type RetryPolicy,
  remoteRetryPolicy,
} from './schedule.ts';
export {
  createSubmissionServer,
  defaultSubmissionLimits,
  SendLimiter,
  type SubmissionLimits,
  type SubmissionServerOptions,
} from './submission.ts';
export {
  type AuthenticationOptions,
  type AuthenticationVerdict,
  checkAuthentication,
  claimsOurAuthservId,
  type DnsResolver,
} from './trust.ts';
