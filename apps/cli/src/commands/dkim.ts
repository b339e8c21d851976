/**
 * `mailwerk dkim …` (keys that sign outgoing mail) and `mailwerk dns DOMAIN`
 * (every record an admin publishes for a domain).
 */

import { Resolver } from 'node:dns/promises';
import { mtaStsId, mtaStsPolicy } from '@mailwerk/autoconfig';
import type { Config } from '@mailwerk/config';
import { dkimRecordValue, generateDkimKey, selectorFor } from '@mailwerk/mta';
import { type DkimKey, isStoreError, normalizeDomain } from '@mailwerk/store';
import type { Command } from '../command.ts';
import { CliError, type Context, ExitStatus } from '../context.ts';
import { printJson, printTable } from '../output.ts';

export interface DnsRecord {
  name: string;
  type: 'MX' | 'TXT' | 'SRV' | 'CNAME';
  value: string;
  /** What it is for, in a few words. */
  purpose: string;
}

/** A TXT value as DNS zone files need it: quoted strings of at most 255 octets each. */
export function txtStrings(value: string): string {
  const parts: string[] = [];
  for (let i = 0; i < value.length; i += 255) parts.push(`"${value.slice(i, i + 255)}"`);
  return parts.join(' ');
}

export function dnsRecords(config: Config, domain: string, keys: DkimKey[]): DnsRecord[] {
  const host = `${config.hostname}.`;
  const d = `${domain}.`;
  const srv = (service: string, port: number, purpose: string): DnsRecord => ({
    name: `_${service}._tcp.${d}`,
    type: 'SRV',
    value: `0 1 ${port} ${host}`,
    purpose,
  });
  return [
    { name: d, type: 'MX', value: `10 ${host}`, purpose: 'mail for the domain goes to this server' },
    { name: d, type: 'TXT', value: 'v=spf1 mx ~all', purpose: 'SPF: the domain sends from its MX host' },
    ...keys.map((k) => ({
      name: `${k.selector}._domainkey.${d}`,
      type: 'TXT' as const,
      value: dkimRecordValue(k),
      purpose: `DKIM ${k.algorithm === 'ed25519-sha256' ? 'Ed25519' : 'RSA'} key (${k.state === 'active' ? 'signing' : 'previous key, kept until its mail is delivered'})`,
    })),
    {
      name: `_dmarc.${d}`,
      type: 'TXT',
      value: 'v=DMARC1; p=quarantine; adkim=r; aspf=r',
      purpose: 'DMARC: mail failing SPF and DKIM for this domain goes to spam',
    },
    srv('submission', config.mta.submission_port, 'mail clients send (STARTTLS), RFC 6186'),
    srv('submissions', config.mta.submissions_port, 'mail clients send (TLS), RFC 8314'),
    srv('imap', config.access.imap_port, 'IMAP (STARTTLS)'),
    srv('imaps', config.access.imaps_port, 'IMAP (TLS)'),
    srv('pop3', config.access.pop3_port, 'POP3 (STLS)'),
    srv('pop3s', config.access.pop3s_port, 'POP3 (TLS)'),
    srv('sieve', config.access.managesieve_port, 'ManageSieve (STARTTLS), RFC 5804 §1.8'),
    {
      name: `autoconfig.${d}`,
      type: 'CNAME',
      value: host,
      purpose: 'Thunderbird account setup (answered when access.autoconfig is on)',
    },
    {
      name: `autodiscover.${d}`,
      type: 'CNAME',
      value: host,
      purpose: 'Outlook account setup (answered when access.autoconfig is on)',
    },
    ...(config.mta.mta_sts_mode === 'none'
      ? []
      : [
          {
            name: `mta-sts.${d}`,
            type: 'CNAME' as const,
            value: host,
            purpose: 'MTA-STS: where senders fetch the policy (HTTPS, this server)',
          },
          {
            name: `_mta-sts.${d}`,
            type: 'TXT' as const,
            value: `v=STSv1; id=${mtaStsId(mtaStsPolicy(config.mta.mta_sts_mode, config.hostname))}`,
            purpose: `MTA-STS (RFC 8461): senders use TLS to this domain (mode ${config.mta.mta_sts_mode}; the id changes with the policy)`,
          },
          {
            name: `_smtp._tls.${d}`,
            type: 'TXT' as const,
            value: `v=TLSRPTv1; rua=mailto:postmaster@${domain}`,
            purpose: 'TLS reporting (RFC 8460): senders report TLS trouble to postmaster',
          },
        ]),
    srv(
      'autodiscover',
      config.access.autoconfig_https_port,
      'Outlook account setup (answered when access.autoconfig is on)',
    ),
  ];
}

export interface RecordCheck extends DnsRecord {
  status: 'ok' | 'missing' | 'different';
  /** What the resolver answered for the name and type (normalised as the comparison sees it). */
  found: string[];
}

/** Trailing dot off, lower case: how names compare. */
const bare = (name: string) => name.replace(/\.$/, '').toLowerCase();

/**
 * Looks up each record: MX, SRV and CNAME compared by target (and preference or port), TXT by its whole
 * value (SPF and DMARC by their own record only: another TXT at the name is not ours to judge).
 */
export async function checkRecords(resolver: Resolver, records: DnsRecord[]): Promise<RecordCheck[]> {
  const out: RecordCheck[] = [];
  for (const r of records) {
    const name = bare(r.name);
    let found: string[] = [];
    try {
      if (r.type === 'MX')
        found = (await resolver.resolveMx(name)).map((m) => `${m.priority} ${bare(m.exchange)}.`);
      else if (r.type === 'SRV')
        found = (await resolver.resolveSrv(name)).map(
          (x) => `${x.priority} ${x.weight} ${x.port} ${bare(x.name)}.`,
        );
      else if (r.type === 'CNAME') found = (await resolver.resolveCname(name)).map((c) => `${bare(c)}.`);
      else {
        found = (await resolver.resolveTxt(name)).map((parts) => parts.join(''));
        // At the domain and at _dmarc, only the SPF or DMARC record is ours to compare.
        const kind = /^v=(spf1|DMARC1)\b/i.exec(r.value)?.[1];
        if (kind) found = found.filter((t) => new RegExp(`^v=${kind}\\b`, 'i').test(t));
      }
    } catch {
      found = [];
    }
    const want = r.type === 'TXT' ? r.value : r.value.toLowerCase();
    const same = (f: string) =>
      r.type === 'TXT' ? f.replace(/\s+/g, '') === want.replace(/\s+/g, '') : f.toLowerCase() === want;
    const status = found.length === 0 ? 'missing' : found.some(same) ? 'ok' : 'different';
    out.push({ ...r, status, found });
  }
  return out;
}

/** The canonical name of a local domain, or the CLI's error saying how to add it. */
async function localDomain(ctx: Context, name: string): Promise<string> {
  const domain = normalizeDomain(name);
  if (!(await ctx.store().getDomain(domain)))
    throw new CliError(`no domain ${domain}; add it with "mailwerk domain add ${domain}"`);
  return domain;
}

const keyRow = (k: DkimKey) => ({
  domain: k.domain,
  selector: k.selector,
  algorithm: k.algorithm,
  state: k.state,
  createdAt: k.createdAt,
  record: { name: `${k.selector}._domainkey.${k.domain}.`, type: 'TXT', value: dkimRecordValue(k) },
});

export const dkimCommands: Command[] = [
  {
    name: ['dkim', 'generate'],
    args: 'DOMAIN',
    summary:
      'make a new DKIM key for a domain (rsa, ed25519 or both); it signs from now on, older keys stay published',
    options: { algorithm: { type: 'string' }, selector: { type: 'string' } },
    help: '--algorithm rsa (default, 2048 bits), ed25519, or both. --selector NAME (default: the date, 20261123; with an e for Ed25519).\nPublish the record it prints before mail is sent with the key: mail signed with a key not yet in DNS fails DKIM.',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [name], opts) {
      const store = ctx.store();
      const domain = await localDomain(ctx, name!);
      const algorithm = typeof opts.algorithm === 'string' ? opts.algorithm : 'rsa';
      const kinds: string[] = algorithm === 'both' ? ['rsa', 'ed25519'] : [algorithm];
      if (!kinds.every((k) => k === 'rsa' || k === 'ed25519'))
        throw new CliError(`unknown algorithm "${algorithm}": use rsa, ed25519 or both`);
      if (typeof opts.selector === 'string' && kinds.length > 1)
        throw new CliError('--selector names one key; generate the two algorithms one at a time');
      const added: DkimKey[] = [];
      for (const kind of kinds) {
        const key = generateDkimKey(kind as 'rsa' | 'ed25519');
        // A removed key's selector is never chosen again: resolvers may still cache its record.
        const taken = [
          ...(await store.listDkimKeys(domain)).map((k) => k.selector),
          ...(await store.retiredDkimSelectors(domain)),
        ];
        const selector =
          typeof opts.selector === 'string' ? opts.selector : selectorFor(new Date(), key.algorithm, taken);
        try {
          added.push(await store.addDkimKey({ domain, selector, ...key }));
        } catch (err) {
          if (isStoreError(err, 'exists') || isStoreError(err, 'invalid')) throw new CliError(err.message);
          throw err;
        }
      }
      if (ctx.json) return printJson(ctx, added.map(keyRow));
      for (const k of added) {
        ctx.print(`new ${k.algorithm} key for ${domain}, selector ${k.selector}; publish:`);
        ctx.print(`${k.selector}._domainkey.${domain}. IN TXT ${txtStrings(dkimRecordValue(k))}`);
      }
      ctx.print(
        'older keys stay published (see "mailwerk dkim list"); remove one with "mailwerk dkim remove DOMAIN SELECTOR" once a few days have passed',
      );
    },
  },
  {
    name: ['dkim', 'list'],
    args: '[DOMAIN]',
    summary: 'list DKIM keys: the signing one and the previous ones still published',
    minArgs: 0,
    maxArgs: 1,
    async run(ctx, [name]) {
      const keys = await ctx.store().listDkimKeys(name ? normalizeDomain(name) : undefined);
      if (ctx.json) return printJson(ctx, keys.map(keyRow));
      if (keys.length === 0) return ctx.print('no DKIM keys; make one with "mailwerk dkim generate DOMAIN"');
      printTable(
        ctx,
        ['DOMAIN', 'SELECTOR', 'ALGORITHM', 'STATE', 'CREATED'],
        keys.map((k) => [
          k.domain,
          k.selector,
          k.algorithm,
          k.state === 'active' ? 'signing' : 'published',
          k.createdAt.toISOString().slice(0, 10),
        ]),
      );
    },
  },
  {
    name: ['dkim', 'remove'],
    args: 'DOMAIN SELECTOR',
    summary:
      'stop publishing a previous DKIM key (the signing key only with --force: mail goes out unsigned)',
    options: { force: { type: 'boolean' } },
    minArgs: 2,
    maxArgs: 2,
    async run(ctx, [name, selector], opts) {
      try {
        await ctx.store().removeDkimKey(normalizeDomain(name!), selector!, { force: opts.force === true });
      } catch (err) {
        if (isStoreError(err, 'conflict')) throw new CliError(`${err.message} (--force removes it anyway)`);
        if (isStoreError(err, 'not_found')) throw new CliError(err.message);
        throw err;
      }
      if (ctx.json) return printJson(ctx, { removed: { domain: name, selector } });
      ctx.print(`removed DKIM key ${selector} of ${name}; its DNS record can go`);
    },
  },
  {
    name: ['dns', 'check'],
    args: 'DOMAIN',
    summary:
      'look up the records "mailwerk dns" prints and say, record by record, what is missing or different',
    help: "--resolver HOST[:PORT] asks that DNS server instead of the system's. Exit status 0 when everything is published as it should be, 1 otherwise.",
    options: { resolver: { type: 'string' } },
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [name], opts) {
      const store = ctx.store();
      const domain = await localDomain(ctx, name!);
      const resolver = new Resolver({ timeout: 3000, tries: 2 });
      if (typeof opts.resolver === 'string') resolver.setServers([opts.resolver]);
      const results = await checkRecords(
        resolver,
        dnsRecords(ctx.config(), domain, await store.listDkimKeys(domain)),
      );
      const bad = results.filter((r) => r.status !== 'ok');
      if (ctx.json) printJson(ctx, results);
      else {
        printTable(
          ctx,
          ['NAME', 'TYPE', 'STATUS', 'FOUND'],
          results.map((r) => [r.name, r.type, r.status, r.found.join(' | ') || '-']),
        );
        ctx.print(
          bad.length
            ? `${bad.length} of ${results.length} records missing or different; "mailwerk dns ${domain}" prints what to publish`
            : `all ${results.length} records published as they should be`,
        );
      }
      if (bad.length) throw new ExitStatus(1);
    },
  },
  {
    name: ['dns'],
    args: 'DOMAIN',
    summary: 'print the DNS records to publish for a domain (MX, SPF, DKIM, DMARC, SRV, autoconfig)',
    minArgs: 1,
    maxArgs: 1,
    async run(ctx, [name]) {
      const store = ctx.store();
      const domain = await localDomain(ctx, name!);
      const config = ctx.config();
      const keys = await store.listDkimKeys(domain);
      const records = dnsRecords(config, domain, keys);
      if (ctx.json) return printJson(ctx, records);
      ctx.print(`; DNS records for ${domain}, served by ${config.hostname}`);
      ctx.print(
        `; ${config.hostname} itself needs A/AAAA records, and its addresses a PTR record naming it.`,
      );
      if (keys.length === 0) ctx.print(`; no DKIM key yet: "mailwerk dkim generate ${domain}" makes one`);
      for (const r of records) {
        ctx.print(`; ${r.purpose}`);
        ctx.print(`${r.name} IN ${r.type} ${r.type === 'TXT' ? txtStrings(r.value) : r.value}`);
      }
    },
  },
];
