/**
 * Mailbox access as a process of its own (the shared setup): IMAP
 * (packages/imap) and POP3 (packages/pop3), the same as
 * `mailwerk start --service access`.
 * Configuration as for `mailwerk`.
 */
import { loadConfig, resolveConfigPath } from '@mailwerk/config';
import { startServices } from '@mailwerk/runtime';

const running = await startServices(loadConfig({ path: resolveConfigPath(process.argv[2]) }), ['access']);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void running.stop());
