/**
 * The configuration read again on SIGHUP (`mailwerk reload`): the supervisor has the CLI check the file
 * (`mailwerk --json config check`, the same parser and validation as at start, run as the supervisor's
 * user so it reads what the start read), takes the settings below from it, and hands them to every
 * service; any other change is logged as waiting for the next start. Plain data work: the supervisor
 * stays without the configuration parser.
 */
import type { Config } from '@mailwerk/config';

/** Settings a running server takes on reload (a key, or everything under it). */
export const RELOADABLE: readonly string[] = ['log_level', 'mta.routes', 'mta.relay_host'];

const isReloadable = (key: string) => RELOADABLE.some((r) => key === r || key.startsWith(`${r}.`));

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function leaves(value: Json, prefix: string, out: Map<string, string>): void {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    // A key that is added or removed (a route) is a leaf on one side only, so it shows as changed.
    for (const k of Object.keys(value)) leaves(value[k]!, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, JSON.stringify(value));
}

/** The settings (dot paths) whose values differ, split into those a reload applies and the rest. */
export function configChanges(current: Config, next: Config): { applied: string[]; atNextStart: string[] } {
  const a = new Map<string, string>();
  const b = new Map<string, string>();
  leaves(current as unknown as Json, '', a);
  leaves(next as unknown as Json, '', b);
  const changed = [...new Set([...a.keys(), ...b.keys()])].filter((k) => a.get(k) !== b.get(k)).sort();
  return {
    applied: changed.filter(isReloadable),
    atNextStart: changed.filter((k) => !isReloadable(k)),
  };
}

/** `current` with the reloadable settings taken from `next`. */
export function withReloadable(current: Config, next: Config): Config {
  const out = structuredClone(current) as unknown as Record<string, Record<string, unknown>>;
  const src = next as unknown as Record<string, Record<string, unknown>>;
  for (const path of RELOADABLE) {
    const [head, tail] = path.split('.') as [string, string | undefined];
    if (tail === undefined) out[head] = structuredClone(src[head]) as never;
    else out[head]![tail] = structuredClone(src[head]![tail]);
  }
  return out as unknown as Config;
}
