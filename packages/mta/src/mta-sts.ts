/**
 * MTA-STS for outbound delivery (RFC 8461): another domain's policy says which of its MX hosts may
 * receive its mail and whether TLS with a valid certificate is required ("enforce"). The policy is
 * announced by a TXT record at `_mta-sts.DOMAIN` (§3.1) and fetched over HTTPS, with the certificate
 * checked and no redirects, from `https://mta-sts.DOMAIN/.well-known/mta-sts.txt` (§3.3); it is cached
 * for its max_age and fetched again when the TXT record's id changes (§5.1). A policy that cannot be
 * fetched and is not cached counts as none (§5).
 *
 * Both texts come from other people's servers: the parsers are bounded (the body at 64 KiB, §3.3 asks
 * for a limit) and never throw on what they read.
 */
import { request } from 'node:https';
import type { LookupFunction } from 'node:net';

export interface StsPolicy {
  mode: 'enforce' | 'testing' | 'none';
  /** MX patterns: a host name, or `*.` and a domain for one more label (§4.1). */
  mx: string[];
  /** Seconds (at most a year, §3.2). */
  maxAge: number;
}

/** The policy text limit a sender keeps to (RFC 8461 §3.3: "SHOULD impose a limit ... 64 KiB"). */
export const MAX_POLICY_BYTES = 64 * 1024;
const MAX_AGE_LIMIT = 31_557_600;

/** The id of a `_mta-sts` TXT record (§3.1), or null when it is not a valid STSv1 record. */
export function parseStsRecord(txt: string): string | null {
  const fields = txt.split(';').map((f) => f.trim());
  if (fields[0] !== 'v=STSv1') return null;
  for (const f of fields.slice(1)) {
    const m = /^id=([A-Za-z0-9]{1,32})$/.exec(f);
    if (m) return m[1]!;
  }
  return null;
}

/** A policy body (§3.2), or null when it is not a valid STSv1 policy. */
export function parseStsPolicy(text: string): StsPolicy | null {
  if (text.length > MAX_POLICY_BYTES) return null;
  let version: string | null = null;
  let mode: string | null = null;
  let maxAge: number | null = null;
  const mx: string[] = [];
  for (const line of text.split(/\r?\n/)) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (key === 'version') version = value;
    else if (key === 'mode') mode = value;
    else if (key === 'max_age') maxAge = /^\d{1,10}$/.test(value) ? Number(value) : -1;
    else if (key === 'mx' && /^(\*\.)?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?$/.test(value))
      mx.push(value.toLowerCase().replace(/\.$/, ''));
  }
  if (version !== 'STSv1') return null;
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return null;
  if (maxAge === null || maxAge < 0 || maxAge > MAX_AGE_LIMIT) return null;
  if (mode !== 'none' && mx.length === 0) return null;
  return { mode, mx, maxAge };
}

/** Whether an MX host name matches one of a policy's patterns (§4.1: a wildcard is one whole label). */
export function mxMatches(host: string, patterns: readonly string[]): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return patterns.some((p) => {
    if (!p.startsWith('*.')) return h === p;
    const dot = h.indexOf('.');
    return dot > 0 && h.slice(dot + 1) === p.slice(2);
  });
}

/** A policy as cached: the TXT id it came with and when it expires. */
export interface CachedPolicy {
  id: string;
  policy: StsPolicy;
  expiresAt: number;
}

export interface PolicyCache {
  get(domain: string): Promise<CachedPolicy | null>;
  put(domain: string, entry: CachedPolicy): Promise<void>;
}

/** This process's memory (the MTA service keeps them in the store as well, so a restart forgets none). */
export function memoryPolicyCache(): PolicyCache {
  const map = new Map<string, CachedPolicy>();
  return {
    get: async (d) => map.get(d) ?? null,
    put: async (d, e) => {
      map.set(d, e);
    },
  };
}

/** Fetches a domain's policy text; null when there is none to be had (any failure). */
export type PolicyFetcher = (domain: string) => Promise<string | null>;

/**
 * The HTTPS fetch of §3.3: the certificate checked for `mta-sts.DOMAIN`, no redirect followed, a 200
 * with text/plain, at most MAX_POLICY_BYTES, within `timeoutMs`. `lookup`, `port` and `ca` let tests
 * send it to loopback with their own CA.
 */
export function httpsPolicyFetcher(
  options: { lookup?: LookupFunction; port?: number; ca?: string; timeoutMs?: number } = {},
): PolicyFetcher {
  return (domain) =>
    new Promise((resolve) => {
      const host = `mta-sts.${domain}`;
      const req = request(
        {
          host,
          servername: host,
          port: options.port ?? 443,
          path: '/.well-known/mta-sts.txt',
          method: 'GET',
          ...(options.lookup ? { lookup: options.lookup } : {}),
          ...(options.ca ? { ca: options.ca } : {}),
          timeout: options.timeoutMs ?? 20_000,
          agent: false,
        },
        (res) => {
          const type = String(res.headers['content-type'] ?? '');
          if (res.statusCode !== 200 || !/^text\/plain\b/i.test(type)) {
            res.resume();
            return resolve(null);
          }
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_POLICY_BYTES) {
              req.destroy();
              resolve(null);
              return;
            }
            chunks.push(c);
          });
          res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
          res.on('error', () => resolve(null));
        },
      );
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(null));
      req.end();
    });
}

export interface StsResolver {
  resolveTxt?(name: string): Promise<string[][]>;
}

/** The policy that applies to mail for `domain` now, or null (§5.1). */
export async function currentPolicy(
  domain: string,
  resolver: StsResolver,
  fetch: PolicyFetcher,
  cache: PolicyCache,
  now = Date.now(),
): Promise<StsPolicy | null> {
  const d = domain.toLowerCase();
  const cached = await cache.get(d).catch(() => null);
  const live = cached && cached.expiresAt > now ? cached : null;
  let id: string | null = null;
  try {
    const records = (await resolver.resolveTxt?.(`_mta-sts.${d}`)) ?? [];
    const sts = records.map((r) => r.join('')).filter((t) => t.startsWith('v=STSv1'));
    // More than one STSv1 record is no record (§3.1).
    id = sts.length === 1 ? parseStsRecord(sts[0]!) : null;
  } catch {
    // No record, or DNS trouble: a cached policy still holds until it expires.
    return live?.policy ?? null;
  }
  if (!id) return live?.policy ?? null;
  if (live && live.id === id) return live.policy;
  const text = await fetch(d);
  const policy = text === null ? null : parseStsPolicy(text);
  if (!policy) return live?.policy ?? null;
  await cache.put(d, { id, policy, expiresAt: now + policy.maxAge * 1000 }).catch(() => undefined);
  return policy;
}
