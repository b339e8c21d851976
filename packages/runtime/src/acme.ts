/**
 * Certificates from an ACME CA (RFC 8555) with acme-client: one certificate for the host name and the
 * account set-up names of every local domain (autoconfig., autodiscover., mta-sts.), kept in the store
 * (`tls_items`), so every process and host presents the same one. The access service, which serves
 * ports 80 and 443, runs the manager: it orders when there is no certificate, when the names changed (a
 * domain added or removed), `renew_days` before expiry, or when `mailwerk cert renew` asked; one process
 * at a time, under the store's named lock. Failures are logged and retried with a growing delay.
 *
 * Challenges: HTTP-01 (RFC 8555 §8.3) answered on the account set-up HTTP port, TLS-ALPN-01 (RFC 8737)
 * on its HTTPS port; the answers are kept in the store too, so whichever host the CA reaches answers.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import type { Config } from '@mailwerk/config';
import type { MailStore, TlsItem } from '@mailwerk/store';
import type { Logger } from './log.ts';

/** The store's names for what ACME keeps. */
export const ACME_CERTIFICATE = 'acme';
const ACCOUNT = 'acme-account';
/** Set by `mailwerk cert renew`: the next check orders whatever the expiry. */
export const RENEW_REQUEST = 'acme-renew-request';
const ORDER_LOCK = 'acme-order';
export const http01Item = (token: string): string => `acme-http-01:${token}`;
export const alpnItem = (name: string): string => `acme-tls-alpn-01:${name.toLowerCase()}`;

/** How long one order may hold the lock; a crashed orderer's lock ends by itself. */
const ORDER_LOCK_MS = 10 * 60_000;
/** The first retry after a failure, doubled each time, at most a day. */
const FIRST_RETRY_MS = 5 * 60_000;
const MAX_RETRY_MS = 24 * 60 * 60_000;

/** The names the certificate covers: the host name first, then each local domain's set-up names. */
export function acmeNames(hostname: string, domains: readonly string[]): string[] {
  const names = new Set<string>();
  for (const d of [...domains].map((x) => x.toLowerCase()).sort())
    for (const prefix of ['autoconfig', 'autodiscover', 'mta-sts']) names.add(`${prefix}.${d}`);
  names.delete(hostname.toLowerCase());
  return [hostname.toLowerCase(), ...names];
}

/** The DNS names a PEM certificate covers (its subjectAltName), sorted. */
export function certificateNames(pem: string): string[] {
  const san = new X509Certificate(pem).subjectAltName ?? '';
  const names = san
    .split(', ')
    .filter((n) => n.startsWith('DNS:'))
    .map((n) => n.slice(4).toLowerCase());
  return [...new Set(names)].sort();
}

/** Why an order is due now, or null. */
export function orderDue(
  current: TlsItem | null,
  request: TlsItem | null,
  names: readonly string[],
  renewDays: number,
  now = Date.now(),
): string | null {
  if (!current?.cert) return 'no certificate yet';
  if (request && request.updatedAt.getTime() >= current.updatedAt.getTime()) return 'renewal asked for';
  let have: string[];
  try {
    have = certificateNames(current.cert);
  } catch {
    return 'the stored certificate does not read';
  }
  if (have.join(' ') !== [...names].sort().join(' ')) return 'the names changed';
  if (!current.notAfter || current.notAfter.getTime() - now < renewDays * 86_400_000)
    return `it expires within ${renewDays} days`;
  return null;
}

export interface AcmeOptions {
  config: Config;
  store: MailStore;
  log: Logger;
  /** Told when this process stored a new certificate. */
  onCertificate(): void;
  /** Whether this process answers on the set-up HTTP port (false when another server holds it). */
  httpListening: boolean;
}

type AcmeClient = typeof import('acme-client');
let acmeClient: Promise<AcmeClient> | null = null;
/**
 * acme-client, loaded once. The access service loads it as it starts, while it may still read every file
 * of the installation: after it drops to the services' user, an installation directory that user cannot
 * read (a checkout under a private directory) would make a first order fail.
 */
export function loadAcmeClient(): Promise<AcmeClient> {
  acmeClient ??= import('acme-client');
  return acmeClient;
}

export class AcmeManager {
  private readonly opts: AcmeOptions;
  private readonly owner = `acme-${randomBytes(6).toString('hex')}`;
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private failures = 0;
  private notBefore = 0;

  constructor(opts: AcmeOptions) {
    this.opts = opts;
  }

  /**
   * The challenge this installation answers (config `tls.acme.challenge`): "auto" is HTTP-01 while this
   * process listens on the set-up HTTP port, and TLS-ALPN-01 on the HTTPS port when that one is not free.
   */
  get challenge(): 'http-01' | 'tls-alpn-01' {
    const { acme } = this.opts.config.tls;
    if (acme.challenge !== 'auto') return acme.challenge;
    return this.opts.httpListening ? 'http-01' : 'tls-alpn-01';
  }

  /** Looks whether an order is due now and then every tls.reload_check_seconds (two rows and the domains). */
  start(): void {
    void this.check('start');
    const every = this.opts.config.tls.reload_check_seconds * 1000;
    this.timer = setInterval(() => void this.check('periodic check'), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  /** Orders when one is due; one run at a time in this process. Never throws. */
  check(why: string): Promise<void> {
    this.running ??= this.run(why).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  private async run(why: string): Promise<void> {
    const { store, log, config } = this.opts;
    try {
      const names = acmeNames(
        config.hostname,
        (await store.listDomains()).map((d) => d.name),
      );
      const [current, request] = await Promise.all([
        store.getTlsItem(ACME_CERTIFICATE),
        store.getTlsItem(RENEW_REQUEST),
      ]);
      const due = orderDue(current, request, names, config.tls.acme.renew_days);
      if (!due) return;
      if (Date.now() < this.notBefore && !request) return;
      if (!(await store.acquireLock(ORDER_LOCK, this.owner, ORDER_LOCK_MS))) {
        log.log('info', 'certificate order left to the process that holds the lock', { why, due });
        return;
      }
      try {
        log.log('info', 'ordering a certificate', { why, due, names, challenge: this.challenge });
        const { cert, key } = await this.order(names);
        const notAfter = new Date(new X509Certificate(cert).validTo);
        await store.putTlsItem({ name: ACME_CERTIFICATE, cert, key, notAfter });
        await store.deleteTlsItem(RENEW_REQUEST);
        this.failures = 0;
        this.notBefore = 0;
        log.log('info', 'certificate issued', { names, notAfter: notAfter.toISOString() });
        this.opts.onCertificate();
      } finally {
        await store.releaseLock(ORDER_LOCK, this.owner);
      }
    } catch (err) {
      this.failures++;
      const wait = Math.min(FIRST_RETRY_MS * 2 ** (this.failures - 1), MAX_RETRY_MS);
      this.notBefore = Date.now() + wait;
      log.log('error', 'certificate order failed; the certificate in use stays', {
        why,
        error: (err as Error).message,
        failures: this.failures,
        nextTry: new Date(this.notBefore).toISOString(),
      });
    }
  }

  private async accountKey(acmeCrypto: typeof import('acme-client').crypto): Promise<string> {
    const { store } = this.opts;
    const stored = await store.getTlsItem(ACCOUNT);
    if (stored?.key) return stored.key;
    const key = (await acmeCrypto.createPrivateEcdsaKey()).toString();
    await store.putTlsItem({ name: ACCOUNT, cert: '', key, notAfter: null });
    // Two processes creating one at once: the one stored last is everyone's from now on.
    return (await store.getTlsItem(ACCOUNT))?.key ?? key;
  }

  private async order(names: string[]): Promise<{ cert: string; key: string }> {
    const { store, config } = this.opts;
    const { Client, crypto: acmeCrypto } = await loadAcmeClient();
    const client = new Client({
      directoryUrl: config.tls.acme.directory_url,
      accountKey: await this.accountKey(acmeCrypto),
    });
    // RSA 2048: the key every mail client and MTA can use.
    const [key, csr] = await acmeCrypto.createCsr({ commonName: names[0]!, altNames: names });
    const challenge = this.challenge;
    const cert = await client.auto({
      csr,
      ...(config.tls.acme.email ? { email: config.tls.acme.email } : {}),
      termsOfServiceAgreed: true,
      challengePriority: [challenge],
      // acme-client's own check would ask port 80 or 443 of the public name from here; the CA checks.
      skipChallengeVerification: true,
      challengeCreateFn: async (authz, ch, keyAuthorization) => {
        if (ch.type === 'http-01')
          await store.putTlsItem({
            name: http01Item(ch.token),
            cert: keyAuthorization,
            key: '',
            notAfter: null,
          });
        // acme-client's types know HTTP-01 and DNS-01 only; it hands TLS-ALPN-01 challenges on all the same.
        else if ((ch.type as string) === 'tls-alpn-01') {
          const [k, c] = await acmeCrypto.createAlpnCertificate(authz, keyAuthorization);
          await store.putTlsItem({
            name: alpnItem(authz.identifier.value),
            cert: c.toString(),
            key: k.toString(),
            notAfter: null,
          });
        }
      },
      challengeRemoveFn: async (authz, ch) => {
        if (ch.type === 'http-01') await store.deleteTlsItem(http01Item(ch.token));
        else if ((ch.type as string) === 'tls-alpn-01')
          await store.deleteTlsItem(alpnItem(authz.identifier.value));
      },
    });
    return { cert, key: key.toString() };
  }
}
