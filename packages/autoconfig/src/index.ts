/**
 * Account setup for mail clients: the user types an address and a password,
 * the client asks this server how to connect.
 *
 * - Thunderbird (and K-9, Evolution …): `GET /mail/config-v1.1.xml?emailaddress=…`
 *   on autoconfig.<domain>, or `/.well-known/autoconfig/mail/config-v1.1.xml`
 *   on the domain itself (Mozilla's autoconfig format).
 * - Outlook: `POST /autodiscover/autodiscover.xml` on autodiscover.<domain>
 *   with the address in the request (the Outlook 2006 schema).
 *
 * Answers name only the services Mailwerk runs, with the ports in the
 * configuration, TLS first, and the full address as user name. Only local
 * domains get an answer; the response does not tell whether the address
 * itself exists.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type MailStore, normalizeDomain } from '@mailwerk/store';

export interface ClientSettings {
  /** The host name clients connect to. */
  hostname: string;
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
      send(res, 404, 'text/plain', 'not found\n');
    } catch {
      send(res, 500, 'text/plain', 'internal error\n');
    }
  };
}
