/**
 * Account setup for mail clients: the user types an address and a password,
 * the client asks this server how to connect.
 *
 * - Thunderbird (and K-9, Evolution …): `GET /mail/config-v1.1.xml?emailaddress=…`
 *   on autoconfig.<domain>, or `/.well-known/autoconfig/mail/config-v1.1.xml`
 *   on the domain itself (Mozilla's autoconfig format).
 * - Outlook: `POST /autodiscover/autodiscover.xml` on autodiscover.<domain>
 *   with the address in the request (the Outlook 2006 schema). Current
 *   Outlook asks first `GET /autodiscover/autodiscover.json?Email=…&Protocol=AutodiscoverV1`
 *   (or `/autodiscover/autodiscover.json/v1.0/ADDRESS?Protocol=AutodiscoverV1`),
 *   answered as Exchange Online answers it: JSON naming the v1 XML URL.
 * - iPhone, iPad and macOS Mail: a configuration profile to install,
 *   `GET /apple/mobileconfig?email=…` (also `mailwerk user profile`).
 *
 * Answers name only the services Mailwerk runs, with the ports in the
 * configuration, TLS first, and the full address as user name. Only local
 * domains get an answer; the response does not tell whether the address
 * itself exists.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type MailStore, normalizeDomain } from '@mailwerk/store';

export interface ClientSettings {
  /** The host name clients connect to. */
  hostname: string;
  /** The MTA-STS mode served for every local domain (RFC 8461); absent: no policy is served. */
  mtaStsMode?: 'none' | 'testing' | 'enforce';
  imaps: number;
  imap: number;
  pop3s: number;
  pop3: number;
  submissions: number;
  submission: number;
}

const xml = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

export function mozillaConfig(domain: string, s: ClientSettings): string {
  const server = (kind: 'incomingServer' | 'outgoingServer', type: string, port: number, socket: string) =>
    `    <${kind} type="${type}">
      <hostname>${xml(s.hostname)}</hostname>
      <port>${port}</port>
      <socketType>${socket}</socketType>
      <authentication>password-cleartext</authentication>
      <username>%EMAILADDRESS%</username>
    </${kind}>`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="${xml(domain)}">
    <domain>${xml(domain)}</domain>
    <displayName>${xml(domain)} mail</displayName>
    <displayShortName>${xml(domain)}</displayShortName>
${server('incomingServer', 'imap', s.imaps, 'SSL')}
${server('incomingServer', 'imap', s.imap, 'STARTTLS')}
${server('incomingServer', 'pop3', s.pop3s, 'SSL')}
${server('incomingServer', 'pop3', s.pop3, 'STARTTLS')}
${server('outgoingServer', 'smtp', s.submissions, 'SSL')}
${server('outgoingServer', 'smtp', s.submission, 'STARTTLS')}
  </emailProvider>
</clientConfig>
`;
}

export function outlookConfig(address: string, s: ClientSettings): string {
  const protocol = (type: string, port: number) => `      <Protocol>
        <Type>${type}</Type>
        <Server>${xml(s.hostname)}</Server>
        <Port>${port}</Port>
        <LoginName>${xml(address)}</LoginName>
        <SPA>off</SPA>
        <SSL>on</SSL>
        <AuthRequired>on</AuthRequired>
      </Protocol>`;
  return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006">
  <Response xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a">
    <Account>
      <AccountType>email</AccountType>
      <Action>settings</Action>
${protocol('IMAP', s.imaps)}
${protocol('POP3', s.pop3s)}
${protocol('SMTP', s.submissions)}
    </Account>
  </Response>
</Autodiscover>
`;
}

/** How long senders cache the policy (RFC 8461 §3.2: at most 31557600 s): a week. */
export const MTA_STS_MAX_AGE = 604_800;

/** The MTA-STS policy (RFC 8461 §3.2): our one MX host, lines ended by CRLF. */
export function mtaStsPolicy(mode: 'none' | 'testing' | 'enforce', mx: string): string {
  return [`version: STSv1`, `mode: ${mode}`, `mx: ${mx}`, `max_age: ${MTA_STS_MAX_AGE}`, ''].join('\r\n');
}

/** The policy's id for its `_mta-sts` TXT record: it changes when the policy does (RFC 8461 §3.1: 1–32 letters and digits). */
export const mtaStsId = (policy: string): string =>
  createHash('sha256').update(policy).digest('hex').slice(0, 20);

/** The Autodiscover v2 answer for Protocol=AutodiscoverV1: where the v1 XML is (as Exchange Online answers). */
export function autodiscoverJson(domain: string): string {
  return `${JSON.stringify({ Protocol: 'AutodiscoverV1', Url: `https://autodiscover.${domain}/autodiscover/autodiscover.xml` })}\n`;
}

/** A stable UUID (RFC 4122 form) from text, so the same account's profile replaces itself when installed again. */
function uuidOf(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`.toUpperCase();
}

/**
 * An Apple configuration profile (an XML property list) with one mail account: IMAP over TLS and
 * submission over TLS with the full address as user name; the password is asked on the device.
 */
export function appleProfile(address: string, s: ClientSettings): string {
  const str = (k: string, v: string) => `      <key>${k}</key>\n      <string>${xml(v)}</string>`;
  const int = (k: string, v: number) => `      <key>${k}</key>\n      <integer>${v}</integer>`;
  const bool = (k: string, v: boolean) => `      <key>${k}</key>\n      <${v}/>`;
  const domain = address.slice(address.lastIndexOf('@') + 1);
  const id = `org.mailwerk.${s.hostname}.${address}`;
  return `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
${[
  str('EmailAccountDescription', address),
  str('EmailAccountName', address),
  str('EmailAccountType', 'EmailTypeIMAP'),
  str('EmailAddress', address),
  str('IncomingMailServerAuthentication', 'EmailAuthPassword'),
  str('IncomingMailServerHostName', s.hostname),
  int('IncomingMailServerPortNumber', s.imaps),
  bool('IncomingMailServerUseSSL', true),
  str('IncomingMailServerUsername', address),
  str('OutgoingMailServerAuthentication', 'EmailAuthPassword'),
  str('OutgoingMailServerHostName', s.hostname),
  int('OutgoingMailServerPortNumber', s.submissions),
  bool('OutgoingMailServerUseSSL', true),
  str('OutgoingMailServerUsername', address),
  bool('OutgoingPasswordSameAsIncomingPassword', true),
  str('PayloadDescription', `The mail account ${address}`),
  str('PayloadDisplayName', address),
  str('PayloadIdentifier', `${id}.mail`),
  str('PayloadType', 'com.apple.mail.managed'),
  str('PayloadUUID', uuidOf(`${id}.mail`)),
  int('PayloadVersion', 1),
].join('\n')}
    </dict>
  </array>
${[
  str('PayloadDescription', `Mail for ${address} on ${domain}`),
  str('PayloadDisplayName', `${domain} mail`),
  str('PayloadIdentifier', id),
  str('PayloadType', 'Configuration'),
  str('PayloadUUID', uuidOf(id)),
  int('PayloadVersion', 1),
]
  .join('\n')
  .replaceAll('      <', '  <')}
</dict>
</plist>
`;
}

/** The domain of an address, canonical, or null. */
function domainOf(address: string): string | null {
  const at = address.lastIndexOf('@');
  if (at <= 0) return null;
  try {
    return normalizeDomain(address.slice(at + 1));
  } catch {
    return null;
  }
}

const MAX_BODY = 16 * 1024;

/** The HTTP handler; serve it on the autoconfig/autodiscover names (HTTP and HTTPS). */
export function autoconfigHandler(store: MailStore, settings: ClientSettings) {
  const isLocal = async (domain: string | null) =>
    domain !== null && (await store.getDomain(domain)) !== null;
  const send = (res: ServerResponse, status: number, type: string, body: string) => {
    res.writeHead(status, { 'Content-Type': type, 'Cache-Control': 'max-age=3600' });
    res.end(body);
  };
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const path = url.pathname.toLowerCase();
      if (
        req.method === 'GET' &&
        (path === '/mail/config-v1.1.xml' || path === '/.well-known/autoconfig/mail/config-v1.1.xml')
      ) {
        const address = url.searchParams.get('emailaddress') ?? '';
        // Without an address, the Host names the domain (autoconfig.<domain> or <domain>).
        const host = (req.headers.host ?? '').replace(/:\d+$/, '').replace(/^autoconfig\./i, '');
        const domain = address ? domainOf(address) : domainOf(`x@${host}`);
        if (!(await isLocal(domain))) return send(res, 404, 'text/plain', 'no such domain here\n');
        return send(res, 200, 'application/xml; charset=utf-8', mozillaConfig(domain!, settings));
      }
      if ((req.method === 'POST' || req.method === 'GET') && path === '/autodiscover/autodiscover.xml') {
        let body = '';
        for await (const chunk of req) {
          body += chunk;
          if (body.length > MAX_BODY) return send(res, 413, 'text/plain', 'request too large\n');
        }
        const address = /<EMailAddress>\s*([^<\s]+)\s*<\/EMailAddress>/i.exec(body)?.[1] ?? '';
        if (!(await isLocal(domainOf(address)))) return send(res, 404, 'text/plain', 'no such domain here\n');
        return send(res, 200, 'application/xml; charset=utf-8', outlookConfig(address, settings));
      }
      if (req.method === 'GET' && path.startsWith('/autodiscover/autodiscover.json')) {
        // ?Email=ADDRESS, or the address as a path segment after /v1.0/ (parameter names as Outlook sends them,
        // matched without regard to case).
        const param = (name: string) =>
          [...url.searchParams].find(([k]) => k.toLowerCase() === name)?.[1] ?? '';
        const rest = url.pathname.slice('/autodiscover/autodiscover.json'.length);
        const address = decodeURIComponent(/^\/v1\.0\/([^/]+)$/i.exec(rest)?.[1] ?? '') || param('email');
        const protocol = param('protocol');
        if (protocol.toLowerCase() !== 'autodiscoverv1')
          return send(
            res,
            400,
            'application/json; charset=utf-8',
            `${JSON.stringify({ ErrorCode: 'InvalidProtocol', ErrorMessage: `The given protocol value '${protocol.slice(0, 64)}' is invalid. Supported values are 'AutodiscoverV1'.` })}\n`,
          );
        const domain = domainOf(address);
        if (!(await isLocal(domain))) return send(res, 404, 'text/plain', 'no such domain here\n');
        return send(res, 200, 'application/json; charset=utf-8', autodiscoverJson(domain!));
      }
      if (req.method === 'GET' && path === '/.well-known/mta-sts.txt' && settings.mtaStsMode) {
        // On mta-sts.<domain> (RFC 8461 §3.3); the domain from the Host.
        const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
        const domain = host.startsWith('mta-sts.') ? domainOf(`x@${host.slice(8)}`) : null;
        if (!(await isLocal(domain))) return send(res, 404, 'text/plain', 'no such domain here\n');
        return send(
          res,
          200,
          'text/plain; charset=utf-8',
          mtaStsPolicy(settings.mtaStsMode, settings.hostname),
        );
      }
      if (req.method === 'GET' && path === '/apple/mobileconfig') {
        const address = (url.searchParams.get('email') ?? '').trim();
        if (!(await isLocal(domainOf(address)))) return send(res, 404, 'text/plain', 'no such domain here\n');
        res.setHeader('Content-Disposition', 'attachment; filename="mail.mobileconfig"');
        return send(
          res,
          200,
          'application/x-apple-aspen-config; charset=utf-8',
          appleProfile(address, settings),
        );
      }
      send(res, 404, 'text/plain', 'not found\n');
    } catch {
      send(res, 500, 'text/plain', 'internal error\n');
    }
  };
}
