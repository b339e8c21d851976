/**
 * The MDA as a process of its own (the shared setup): the same as
 * `mailwerk start --service mda`. Configuration as for `mailwerk`.
 */
import { loadConfig, resolveConfigPath } from '@mailwerk/config';
import { startServices } from '@mailwerk/runtime';

const running = await startServices(loadConfig({ path: resolveConfigPath(process.argv[2]) }), ['mda']);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void running.stop());
