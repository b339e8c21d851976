export {
  type Config,
  ConfigError,
  DEFAULT_CONFIG_PATH,
  envName,
  fromData,
  type LoadOptions,
  loadConfig,
  resolveConfigPath,
} from './load.ts';
export { sampleConfig } from './sample.ts';
export { type ConfigInput, configSchema } from './schema.ts';
export { formatByteSize, parseByteSize } from './size.ts';
