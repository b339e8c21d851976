/**
 * Who sent it: SPF, DKIM, DMARC and ARC for mail from the internet, checked
 * with mailauth, reported in one Authentication-Results: header with this
 * host's authserv-id (RFC 8601), and the sender domain's DMARC policy
 * applied: p=reject refuses the message (or files it into Junk, when the
 * admin prefers that), p=quarantine files it into Junk.
 *
 * The DNS resolver is a dependency, so tests answer SPF, DKIM and DMARC
 * queries from a table.
 */
import { promises as dns } from 'node:dns';
import { headerBlock } from '@mailwerk/smtp';
import { authenticate } from 'mailauth';

/** mailauth's resolver: (name, rrtype) → records; TXT records as arrays of strings. */
export type DnsResolver = (name: string, rrtype: string) => Promise<unknown>;

export interface AuthenticationOptions {
  /** The authserv-id: this host's name. */
  hostname: string;
  resolver?: DnsResolver;
  /** What p=reject does: refuse (550 5.7.1) or file into Junk. */
  dmarcReject?: 'reject' | 'junk';
}

export interface AuthenticationVerdict {
  /** Header fields to prepend (Authentication-Results, Received-SPF), complete lines. */
  header: string;
  action: 'accept' | 'junk' | 'reject';
  /** For the log and the reply: `dmarc=fail (p=reject) header.from=…`. */
  summary: string;
  results: { spf: string; dkim: string; dmarc: string; arc: string };
}

const defaultResolver: DnsResolver = (name, rrtype) => dns.resolve(name, rrtype as 'TXT');

export async function checkAuthentication(
  message: Buffer,
  session: { ip: string; helo: string; sender: string },
  options: AuthenticationOptions,
): Promise<AuthenticationVerdict> {
  const r = await authenticate(message, {
    ip: session.ip,
    helo: session.helo,
    sender: session.sender,
    mta: options.hostname,
    resolver: (options.resolver ?? defaultResolver) as never,
    trustReceived: false,
    disableBimi: true,
  });
  const spf = r.spf ? r.spf.status.result : 'none';
  const dkim = r.dkim.results.length ? r.dkim.results.map((x) => x.status.result).join(',') : 'none';
  const dmarc = r.dmarc ? r.dmarc.status.result : 'none';
  const arc = r.arc ? r.arc.status.result : 'none';
  let action: AuthenticationVerdict['action'] = 'accept';
  let summary = `spf=${spf} dkim=${dkim} dmarc=${dmarc}`;
  if (r.dmarc && dmarc === 'fail' && !r.dmarc.testMode) {
    const policy = r.dmarc.policy;
    summary += ` (p=${policy}) header.from=${r.dmarc.domain}`;
    if (policy === 'reject') action = options.dmarcReject === 'junk' ? 'junk' : 'reject';
    else if (policy === 'quarantine') action = 'junk';
  }
  const header = r.headers.replace(/\r?\n/g, '\r\n');
  return {
    header: header.endsWith('\r\n') ? header : `${header}\r\n`,
    action,
    summary,
    results: { spf, dkim, dmarc, arc },
  };
}

/**
 * An Authentication-Results: field that claims to come from this host was
 * forged on the way (RFC 8601 §5): such fields are removed before ours is added.
 */
export function claimsOurAuthservId(raw: string, hostname: string): boolean {
  const value = raw
    .slice(raw.indexOf(':') + 1)
    .replace(/\([^)]*\)/g, '')
    .trim();
  const id = value.split(/[;\s]/, 1)[0] ?? '';
  return id.toLowerCase() === hostname.toLowerCase();
}

/**
 * The value of this host's own Authentication-Results field in a message (the MX removed any other
 * claiming our name before adding it), or null: what the later steps trust about the sender.
 */
export function ourAuthenticationResults(message: Buffer, hostname: string): string | null {
  const field = headerBlock(message)
    .replace(/\r?\n[ \t]+/g, ' ')
    .split(/\r?\n/)
    .find((f) => /^authentication-results:/i.test(f) && claimsOurAuthservId(f, hostname));
  return field ? field.slice(field.indexOf(':') + 1).trim() : null;
}
