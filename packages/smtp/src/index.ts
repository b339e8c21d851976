export {
  countHeaderFields,
  editHeader,
  foldLongLines,
  hasBareLineEndingAtDot,
  headerBlock,
  type ReadResult,
  readBounded,
} from './data.ts';
export { installProtocolGuards } from './guards.ts';
export { type ReceivedInfo, receivedHeader, rfc5322Date } from './received.ts';
export {
  asReply,
  installAuthAfterTls,
  installGreetingDelay,
  installRelayGuard,
  installReplyCodes,
  reply,
  SmtpError,
} from './reply.ts';
