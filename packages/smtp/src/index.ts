export {
  countHeaderFields,
  editHeader,
  foldLongLines,
  headerBlock,
  markedAsSpam,
  type ReadResult,
  readBounded,
} from './data.ts';
export { installDotReader, REQUIRED_MEMBERS } from './dots.ts';
export { installProtocolGuards } from './guards.ts';
export { type ReceivedInfo, receivedHeader, rfc5322Date } from './received.ts';
export {
  asReply,
  installAuthAfterTls,
  installGreetingDelay,
  installRelayGuard,
  installReplyCodes,
  isSieveRefusal,
  reply,
  SIEVE_REFUSAL,
  SmtpError,
} from './reply.ts';
export { isSrsAddress, SrsError, type SrsOptions, srsForward, srsReverse } from './srs.ts';
