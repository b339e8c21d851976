export { decodeXtext, parsePath, type SmtpAddress, type SmtpParams } from './command.ts';
export {
  countHeaderFields,
  editHeader,
  foldLongLines,
  headerBlock,
  markedAsSpam,
} from './data.ts';
export { DataReader } from './dots.ts';
export { type ReceivedInfo, receivedHeader, rfc5322Date } from './received.ts';
export {
  asReply,
  isSieveRefusal,
  reply,
  SIEVE_REFUSAL,
  SmtpError,
} from './reply.ts';
export {
  SmtpConnection,
  type SmtpEnvelope,
  SmtpServer,
  type SmtpServerOptions,
  type SmtpSession,
} from './server.ts';
export { isSrsAddress, SrsError, type SrsOptions, srsForward, srsReverse } from './srs.ts';
