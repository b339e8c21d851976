export { createLogger, type Level, type Logger } from './log.ts';
export { type Listening, type Running, SERVICES, type ServiceName, startServices } from './services.ts';
export { openStore, UnsupportedBackendError } from './store.ts';
