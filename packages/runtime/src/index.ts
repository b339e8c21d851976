export { ACME_CERTIFICATE, acmeNames, RENEW_REQUEST } from './acme.ts';
export { build } from './build.ts';
export { createLogger, type Level, type Logger } from './log.ts';
export { type Listening, type Running, SERVICES, type ServiceName, startServices } from './services.ts';
export type { ReporterMessage } from './supervise.ts';
export { StartError, Supervisor, type SupervisorOptions } from './supervisor.ts';
export { mailwerkVersion } from './version.ts';

/** The supervisor of `mailwerk start`, as built JavaScript (see build.ts and supervise.ts). */
export const SUPERVISE_ENTRY = new URL('../dist/supervise.js', import.meta.url).pathname;
export { dropPrivileges, handOverData, isRoot, lookupUser, serviceIdentity } from './privileges.ts';
export { openStore, UnsupportedBackendError } from './store.ts';
