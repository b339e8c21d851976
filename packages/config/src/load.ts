/**
 * Loading the configuration: one TOML file plus MAILWERK_* environment
 * overrides. This is the only module of the suite that reads process.env.
 *
 * Environment overrides name a key by its path in upper case, sections
 * joined by a double underscore: MAILWERK_DATA_DIR, MAILWERK_MTA__SMTP_PORT,
 * MAILWERK_LIMITS__MESSAGE_SIZE="10 MB".
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import { configSchema, type ParsedConfig } from './schema.ts';

export const DEFAULT_CONFIG_PATH = '/etc/mailwerk/mailwerk.toml';
const ENV_PREFIX = 'MAILWERK_';

/** Every problem found, each naming the key and the reason. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(source: string, problems: string[]) {
    super(`invalid configuration in ${source}:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

export interface Config extends ParsedConfig {
  /** The file this was read from, or null when none existed. */
  source: string | null;
  store: ParsedConfig['store'] & { sqlite_path: string };
  tls: ParsedConfig['tls'] & { cert: string; key: string };
}

type Env = Record<string, string | undefined>;

/** The config file to use: the explicit path, else MAILWERK_CONFIG, else ./mailwerk.toml if present, else /etc/mailwerk/mailwerk.toml. */
export function resolveConfigPath(
  explicit?: string,
  env: Env = process.env,
  exists: (p: string) => boolean = fileExists,
): string {
  if (explicit) return resolve(explicit);
  if (env.MAILWERK_CONFIG) return resolve(env.MAILWERK_CONFIG);
  const local = resolve('mailwerk.toml');
  return exists(local) ? local : DEFAULT_CONFIG_PATH;
}

function fileExists(p: string): boolean {
  try {
    readFileSync(p);
    return true;
  } catch {
    return false;
  }
}

/** Leaf keys of the schema with their JSON-schema types, for environment overrides. */
function leaves(): Array<{ path: string[]; types: string[] }> {
  const out: Array<{ path: string[]; types: string[] }> = [];
  const json = z.toJSONSchema(configSchema, { io: 'input' }) as JsonSchema;
  const walk = (node: JsonSchema, path: string[]) => {
    if (node.type === 'object' && node.properties) {
      for (const [k, v] of Object.entries(node.properties)) walk(v, [...path, k]);
      return;
    }
    out.push({ path, types: typesOf(node) });
  };
  walk(json, []);
  return out;
}

export interface JsonSchema {
  type?: string;
  properties?: Record<string, JsonSchema>;
  anyOf?: JsonSchema[];
  enum?: unknown[];
  default?: unknown;
  description?: string;
}

export const typesOf = (node: JsonSchema): string[] =>
  node.anyOf ? node.anyOf.flatMap(typesOf) : node.type ? [node.type] : node.enum ? ['string'] : [];

export const envName = (path: string[]): string => ENV_PREFIX + path.map((p) => p.toUpperCase()).join('__');

function coerce(raw: string, types: string[]): unknown {
  // A list or a table (mta.relay_host.domains, mta.routes) is given as JSON.
  if ((types.includes('array') || types.includes('object')) && /^\s*[[{]/.test(raw)) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  if (types.includes('boolean')) {
    if (/^(true|yes|on|1)$/i.test(raw)) return true;
    if (/^(false|no|off|0)$/i.test(raw)) return false;
    return raw;
  }
  if ((types.includes('integer') || types.includes('number')) && /^-?\d+(\.\d+)?$/.test(raw.trim())) {
    return Number(raw);
  }
  return raw;
}

function applyEnv(data: Record<string, unknown>, env: Env): Record<string, unknown> {
  for (const { path, types } of leaves()) {
    const raw = env[envName(path)];
    if (raw === undefined) continue;
    let node = data;
    for (const key of path.slice(0, -1)) {
      const next = node[key];
      node[key] = typeof next === 'object' && next !== null ? next : {};
      node = node[key] as Record<string, unknown>;
    }
    node[path.at(-1)!] = coerce(raw, types);
  }
  return data;
}

export interface LoadOptions {
  /** The config file; missing is allowed only when `optional`. */
  path: string;
  optional?: boolean;
  env?: Env;
}

export function loadConfig({ path, optional = false, env = process.env }: LoadOptions): Config {
  let data: Record<string, unknown> = {};
  let source: string | null = path;
  let text: string | null = null;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' && optional) source = null;
    else
      throw new ConfigError(path, [code === 'ENOENT' ? 'the file does not exist' : (err as Error).message]);
  }
  if (text !== null) {
    try {
      data = parseToml(text) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError(path, [`not valid TOML: ${(err as Error).message.split('\n')[0]}`]);
    }
  }
  return fromData(applyEnv(data, env), source);
}

/** Validates already-parsed data (file contents plus overrides) and fills in derived values. */
export function fromData(data: unknown, source: string | null): Config {
  const result = configSchema.safeParse(data);
  if (!result.success) {
    const problems = result.error.issues.map((i) => {
      const key = i.path.join('.') || '(top level)';
      if (i.code === 'unrecognized_keys')
        return `${key === '(top level)' ? '' : `${key}: `}unknown key(s) ${i.keys.join(', ')}`;
      return `${key}: ${i.message}`;
    });
    throw new ConfigError(source ?? 'the environment', problems);
  }
  const c = result.data;
  const base = source ? dirname(source) : process.cwd();
  const dataDir = isAbsolute(c.data_dir) ? c.data_dir : resolve(base, c.data_dir);
  const problems: string[] = [];
  if (c.store.backend === 'mongodb' && !c.store.mongodb_url)
    problems.push('store.mongodb_url: required when store.backend is "mongodb"');
  if (Boolean(c.tls.cert) !== Boolean(c.tls.key)) problems.push('tls: set both cert and key, or neither');
  if (c.tls.acme.enabled && !c.access.autoconfig)
    problems.push(
      'tls.acme: needs access.autoconfig (the CA validates on its HTTP/HTTPS ports; behind a web server, pass /.well-known/acme-challenge/ on, docs/reverse-proxy.md)',
    );
  if (problems.length > 0) throw new ConfigError(source ?? 'the environment', problems);
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  return {
    ...c,
    source,
    hostname: c.hostname || hostname(),
    data_dir: dataDir,
    store: {
      ...c.store,
      sqlite_path: c.store.sqlite_path ? abs(c.store.sqlite_path) : join(dataDir, 'mailwerk.sqlite'),
    },
    tls: {
      ...c.tls,
      cert: c.tls.cert ? abs(c.tls.cert) : join(dataDir, 'tls', 'cert.pem'),
      key: c.tls.key ? abs(c.tls.key) : join(dataDir, 'tls', 'key.pem'),
    },
    mda: { ...c.mda, lmtp: c.mda.lmtp || `unix:${join(dataDir, 'lmtp.sock')}` },
  };
}
