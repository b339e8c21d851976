/**
 * The one configuration schema of the suite. The documented sample file
 * (`mailwerk config sample`) is generated from it, so a key and its
 * documentation cannot drift apart. An empty string means "derived": from the
 * data directory or the system, as each key's description says.
 */
import { z } from 'zod';
import { parseByteSize } from './size.ts';

const port = (def: number, what: string) =>
  z.number().int().min(1).max(65535).default(def).describe(`${what} (TCP port).`);

const byteSize = (def: string, what: string) =>
  z
    .union([z.number().int().min(0), z.string()])
    .default(def)
    .describe(`${what}. Bytes, or a size such as "25 MB", "50M" or "1 GiB".`)
    .transform((v, ctx) => {
      try {
        return parseByteSize(v);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    });

const listen = z
  .string()
  .default('0.0.0.0')
  .describe('Address the listeners bind to: "0.0.0.0" for all IPv4, "::" for all IPv4 and IPv6.');

export const configSchema = z.strictObject({
  hostname: z
    .string()
    .regex(/^$|^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/, 'must be a host name such as mail.example.org')
    .default('')
    .describe(
      'Fully qualified name of this host, used in SMTP greetings, Received: headers and the self-signed certificate. Empty: the system host name.',
    ),
  data_dir: z
    .string()
    .default('/var/lib/mailwerk')
    .describe(
      'Directory holding the embedded store, message bodies, TLS files and sockets. Relative paths are relative to this file.',
    ),
  log_level: z
    .enum(['debug', 'info', 'warn', 'error'])
    .default('info')
    .describe('Least severe log level written.'),

  run_as: z
    .string()
    .regex(/^[a-z_][a-z0-9_-]*$/, 'a user name')
    .default('mailwerk')
    .describe(
      'The unprivileged user the services run as when mailwerk start is started as root: they bind their ports, then drop to it (mailwerk init creates it). Ignored when not started as root.',
    ),

  store: z
    .strictObject({
      backend: z
        .enum(['sqlite', 'mongodb'])
        .default('sqlite')
        .describe(
          '"sqlite": the embedded store on this host. "mongodb": the shared store for several hosts.',
        ),
      sqlite_path: z
        .string()
        .default('')
        .describe('SQLite database file. Empty: mailwerk.sqlite in data_dir.'),
      bodies: z
        .enum(['sqlite', 'files'])
        .default('sqlite')
        .describe(
          'Where the embedded store keeps message bodies: "sqlite" (inside the database; measured faster, see bench/blob-store.ts) or "files" (content-addressed files under data_dir/blobs).',
        ),
      mongodb_url: z
        .string()
        .default('')
        .describe('MongoDB connection string (a replica set), required when backend is "mongodb".'),
    })
    .prefault({})
    .describe('Where mailboxes, accounts and the queue live.'),

  redis: z
    .strictObject({
      url: z
        .string()
        .default('')
        .describe(
          'Redis URL for change events, locks and rate limits shared by several processes. Empty: in-process.',
        ),
    })
    .prefault({})
    .describe('Optional Redis, for the shared (multi-host) setup.'),

  tls: z
    .strictObject({
      cert: z
        .string()
        .default('')
        .describe('PEM certificate chain. Empty: data_dir/tls/cert.pem, self-signed on first start.'),
      key: z
        .string()
        .default('')
        .describe('PEM private key. Empty: data_dir/tls/key.pem, generated with the certificate.'),
      allow_plaintext_auth: z
        .boolean()
        .default(false)
        .describe('Allow passwords over connections without TLS. Leave off except for tests on loopback.'),
      reload_check_seconds: z
        .number()
        .min(1)
        .max(3600)
        .default(30)
        .describe(
          'How often the services look whether the certificate files were replaced (then they take them without a restart; SIGHUP or mailwerk reload does it at once).',
        ),
      acme: z
        .strictObject({
          enabled: z
            .boolean()
            .default(false)
            .describe(
              "Get the certificate from an ACME CA (RFC 8555; Let's Encrypt by default) for the host name and autoconfig., autodiscover. and mta-sts. of every local domain. The CA must reach this server on port 80 (HTTP-01) or 443 (TLS-ALPN-01) under those names.",
            ),
          email: z
            .string()
            .default('')
            .describe('Contact address given to the CA (expiry notices). Optional.'),
          directory_url: z
            .url()
            .default('https://acme-v02.api.letsencrypt.org/directory')
            .describe(
              "The CA's directory. Let's Encrypt's staging CA: https://acme-staging-v02.api.letsencrypt.org/directory.",
            ),
          challenge: z
            .enum(['auto', 'http-01', 'tls-alpn-01'])
            .default('auto')
            .describe(
              '"auto": HTTP-01 on the account set-up HTTP port; TLS-ALPN-01 on its HTTPS port when that HTTP port is held by another server (the access service then starts without it, with a warning).',
            ),
          renew_days: z
            .number()
            .min(1)
            .max(365)
            .default(30)
            .describe('Renew this many days before the certificate expires.'),
        })
        .prefault({})
        .describe(
          'Certificates from an ACME CA, kept in the store so every process and host presents the same one; one process orders at a time.',
        ),
    })
    .prefault({})
    .describe('TLS for every protocol (STARTTLS and implicit TLS).'),

  mta: z
    .strictObject({
      listen,
      smtp_port: port(25, 'SMTP for mail from the internet (MX)'),
      submission_port: port(587, 'Submission with STARTTLS for your users'),
      submissions_port: port(465, 'Submission over implicit TLS for your users'),
      processes: z
        .number()
        .int()
        .min(1)
        .max(64)
        .default(1)
        .describe(
          'How many processes run the MTA under `mailwerk start` (each listens on the SMTP ports, sharing them with SO_REUSEPORT on Linux, and runs a queue runner): more than one lets the MX use more cores. Ports given as 0 (any free port) allow only one.',
        ),
      send_limit_per_hour: z
        .number()
        .int()
        .min(1)
        .default(500)
        .describe(
          'Messages one user may submit in an hour; beyond it they are refused with 450 4.7.1 until the hour has passed.',
        ),
      retry_first_seconds: z
        .number()
        .int()
        .min(10)
        .default(300)
        .describe(
          'After a temporary failure to deliver to another domain, the first retry comes this many seconds later; each further one twice as late, up to retry_max_seconds.',
        ),
      retry_max_seconds: z
        .number()
        .int()
        .min(10)
        .default(14_400)
        .describe('The longest pause between two delivery attempts.'),
      give_up_after_days: z
        .number()
        .min(0.01)
        .max(30)
        .default(5)
        .describe(
          'How long a message may wait in the queue before it is returned to its sender as undeliverable.',
        ),
      relay_host: z
        .strictObject({
          host: z
            .string()
            .default('')
            .describe(
              "A relay host (smarthost) for outside mail, as many providers that block port 25 require. Empty: deliver to each domain's MX directly.",
            ),
          port: z
            .number()
            .int()
            .min(1)
            .max(65535)
            .default(587)
            .describe('Its port (587 submission, 465 implicit TLS, 25).'),
          tls: z
            .enum(['starttls', 'tls', 'none'])
            .default('starttls')
            .describe(
              '"starttls": STARTTLS required; "tls": implicit TLS (port 465); "none": plain (only on a trusted network; never with AUTH).',
            ),
          verify_certificate: z
            .boolean()
            .default(true)
            .describe("Check its certificate against the system's CAs and its name."),
          user: z.string().default('').describe('AUTH user name at the relay (empty: no AUTH).'),
          password_file: z
            .string()
            .default('')
            .describe(
              'A file (mode 0600) whose first line is the AUTH password, so the secret stays out of this file.',
            ),
          domains: z
            .array(z.string())
            .default([])
            .describe('Only mail to these destination domains goes through it (empty: all outside mail).'),
        })
        .prefault({})
        .describe('Sending outside mail through a relay host instead of to each MX.'),
      routes: z
        .record(z.string(), z.string())
        .default({})
        .describe(
          'Static routes: destination domain = "host:port" of the server that takes its mail (no MX lookup; opportunistic TLS, no AUTH). Before relay_host.',
        ),
      greeting_delay_ms: z
        .number()
        .int()
        .min(0)
        .max(30_000)
        .default(0)
        .describe(
          "Wait this long before the MX greets; a client that talks first is refused (554 5.5.0), as postscreen's pregreet test. 0: greet at once.",
        ),
      greylisting: z
        .boolean()
        .default(false)
        .describe('Greylist the first attempt of each (client network, sender, recipient) with 451 4.7.1.'),
      greylist_delay_seconds: z
        .number()
        .int()
        .min(1)
        .default(300)
        .describe('How long a greylisted sender must wait before retrying.'),
      delay_warning_hours: z
        .number()
        .min(0)
        .max(720)
        .default(0)
        .describe(
          'Tell the sender once when a message has waited this many hours (a "delayed" report); 0: never, as Postfix\'s default.',
        ),
      received_header: z
        .enum(['private', 'full'])
        .default('private')
        .describe(
          'What the Received: header of submitted mail says about the sender\'s client: "private" (nothing: only this host, the protocol and the time) or "full" (its address and EHLO name, as Postfix does).',
        ),
      mta_sts_mode: z
        .enum(['none', 'testing', 'enforce'])
        .default('testing')
        .describe(
          'The MTA-STS policy (RFC 8461) served at https://mta-sts.DOMAIN/.well-known/mta-sts.txt for every local domain: "testing" (senders report TLS trouble, deliver anyway), "enforce" (senders that honour it deliver only over verified TLS: needs a certificate from a public CA), "none" (withdraws it). Published with the records mailwerk dns prints.',
        ),
      dane_resolver: z
        .string()
        .regex(/^$|^(\[[0-9a-fA-F:.]+\]|[0-9.]+)(:\d+)?$/, 'an IP address, optionally with :port')
        .default('')
        .describe(
          'A DNSSEC-validating resolver on a trusted path (e.g. unbound on 127.0.0.1): outbound mail then honours DANE (RFC 7672): an MX host with validated TLSA records gets TLS that must match them, or no mail. Empty: no DANE.',
        ),
    })
    .prefault({})
    .describe('The MTA: receives and sends mail over SMTP.'),

  mda: z
    .strictObject({
      lmtp: z
        .string()
        .default('')
        .describe(
          'Where the MDA takes LMTP: "unix:/path/to/socket" or "host:port" (loopback). Empty: unix socket data_dir/lmtp.sock.',
        ),
      fetch_check_seconds: z
        .number()
        .int()
        .min(1)
        .max(3600)
        .default(30)
        .describe(
          'How often the MDA looks for remote accounts (mailwerk fetch) whose interval has passed; each is fetched at its own --every.',
        ),
    })
    .prefault({})
    .describe('The MDA: delivers into mailboxes over LMTP, and fetches from other servers.'),

  checks: z
    .strictObject({
      authentication: z
        .boolean()
        .default(true)
        .describe(
          'Check SPF, DKIM, DMARC and ARC of mail from the internet and add an Authentication-Results: header.',
        ),
      dmarc_reject: z
        .enum(['reject', 'junk'])
        .default('reject')
        .describe(
          'What a sender domain\'s DMARC p=reject does to mail that fails it: "reject" (550 5.7.1) or "junk" (filed into Junk).',
        ),
      arc_seal: z
        .boolean()
        .default(false)
        .describe(
          'ARC-seal (RFC 8617) mail forwarded to other domains (alias targets, Sieve redirects) with the DKIM key of the domain that forwards it, passing on what this MX found (its Authentication-Results), so a receiver that trusts this server can still see that SPF and DKIM passed here.',
        ),
    })
    .prefault({})
    .describe('Who sent it: sender authentication on the MX.'),

  rspamd: z
    .strictObject({
      url: z
        .string()
        .default('')
        .describe('rspamd\'s scanner worker, e.g. "http://127.0.0.1:11333". Empty: no spam scanning.'),
      timeout_seconds: z
        .number()
        .min(1)
        .max(300)
        .default(20)
        .describe("How long to wait for rspamd's answer."),
      on_failure: z
        .enum(['accept', 'tempfail'])
        .default('accept')
        .describe(
          'When rspamd does not answer: "accept" the message marked unscanned, or "tempfail" (451) so the sender retries later.',
        ),
      scan_outbound: z
        .boolean()
        .default(false)
        .describe(
          "Also scan mail your users submit; rspamd's reject refuses it (550 5.7.1), soft reject defers it (451).",
        ),
    })
    .prefault({})
    .describe('Spam scanning with rspamd over its HTTP protocol.'),

  access: z
    .strictObject({
      listen,
      imap_port: port(143, 'IMAP with STARTTLS'),
      imaps_port: port(993, 'IMAP over implicit TLS'),
      pop3_port: port(110, 'POP3 with STLS'),
      pop3s_port: port(995, 'POP3 over implicit TLS'),
      managesieve_port: port(4190, 'ManageSieve'),
      autoconfig: z
        .boolean()
        .default(true)
        .describe(
          "Answer mail clients' account setup (Thunderbird autoconfig, Outlook autodiscover, Apple profiles) over HTTP and HTTPS on the ports below; turn it off when a web server already owns them (and proxy /mail/, /.well-known/autoconfig/, /autodiscover/ and /apple/ to Mailwerk instead).",
        ),
      autoconfig_http_port: port(80, 'Account setup over HTTP (Thunderbird)'),
      autoconfig_https_port: port(443, 'Account setup over HTTPS (Outlook, Thunderbird)'),
    })
    .prefault({})
    .describe('Mailbox access for mail clients.'),

  limits: z
    .strictObject({
      message_size: byteSize('50 MiB', 'Largest message accepted'),
      max_recipients: z
        .number()
        .int()
        .min(1)
        .max(100000)
        .default(100)
        .describe('Most recipients of one message.'),
      max_connections: z
        .number()
        .int()
        .min(1)
        .default(1000)
        .describe('Most simultaneous connections per service.'),
      connections_per_minute: z
        .number()
        .int()
        .min(1)
        .default(120)
        .describe('New connections per minute from one client address to the MX; more get 421 4.7.0.'),
      failed_recipients_per_ip: z
        .number()
        .int()
        .min(1)
        .default(30)
        .describe(
          'Refused recipients (unknown users, relay attempts) from one address in 15 minutes before the MX turns it away.',
        ),
      command_timeout_seconds: z
        .number()
        .min(1)
        .default(300)
        .describe(
          'Longest time one SMTP command may take to arrive, even byte by byte (RFC 5321: 5 minutes).',
        ),
      min_data_rate: z
        .number()
        .int()
        .min(0)
        .default(256)
        .describe(
          'Slowest message transfer the MX accepts, in bytes per second after the first minute (0: no minimum).',
        ),
      max_connections_per_ip: z
        .number()
        .int()
        .min(1)
        .default(20)
        .describe('Most simultaneous connections from one client address per service.'),
    })
    .prefault({})
    .describe('Limits that protect the server.'),

  admin: z
    .strictObject({
      listen: z
        .string()
        .default('127.0.0.1')
        .describe(
          'Address of the admin HTTP port (/metrics for Prometheus, /healthz, /readyz, /status). Loopback by default: it tells anyone who reaches it how the server is doing.',
        ),
      port: z
        .number()
        .int()
        .min(0)
        .max(65535)
        .default(8010)
        .describe('Port of the admin HTTP endpoints (mailwerk start); 0 turns them off.'),
    })
    .prefault({})
    .describe('The admin HTTP port of `mailwerk start`: metrics, health and status.'),

  supervisor: z
    .strictObject({
      watchdog_seconds: z
        .number()
        .min(2)
        .default(15)
        .describe(
          'A service process whose event loop has not turned for this long is killed and started again (mailwerk start).',
        ),
      stop_timeout_seconds: z
        .number()
        .min(1)
        .default(10)
        .describe('How long services get to stop cleanly on SIGTERM before they are killed.'),
    })
    .prefault({})
    .describe('How `mailwerk start` watches over the service processes it runs.'),
});

/** The configuration as read from the file, before derived values are filled in. */
export type ConfigInput = z.input<typeof configSchema>;
export type ParsedConfig = z.output<typeof configSchema>;
