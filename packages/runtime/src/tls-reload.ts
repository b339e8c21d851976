/**
 * Certificates replaced without a restart: SIGHUP (`mailwerk reload`) or a
 * change of the files on disk (checked every tls.reload_check_seconds) reads
 * tls.cert and tls.key again and hands them to every server of the process;
 * connections open stay as they are, new ones (and STARTTLS from now on)
 * get the new certificate. A pair that does not load (a key that does not
 * match, half a file written) is refused with a log line and the old one
 * stays.
 */
import { readFileSync, statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { Logger } from './log.ts';

export interface TlsFiles {
  key: string;
  cert: string;
}

/** Whether a pair loads (a key that does not match its certificate does not). */
function usable(t: TlsFiles): boolean {
  try {
    createSecureContext(t);
    return true;
  } catch {
    return false;
  }
}

export class TlsReloader {
  private readonly paths: { cert: string; key: string };
  private readonly log: Logger;
  private current: TlsFiles;
  private stamp: string;
  private readonly users: Array<(tls: TlsFiles) => void> = [];
  private timer: NodeJS.Timeout | null = null;

  /** Where a certificate that outranks the files comes from (the ACME one in the store), if anywhere. */
  private readonly source: (() => Promise<TlsFiles | null>) | null;
  /** Whether the pair in use came from `source` (then the files are not looked at). */
  private sourced = false;

  constructor(
    paths: { cert: string; key: string },
    initial: TlsFiles,
    log: Logger,
    source: { initial: TlsFiles | null; read(): Promise<TlsFiles | null> } | null = null,
  ) {
    this.paths = paths;
    this.current = initial;
    this.log = log;
    this.stamp = this.stampNow();
    this.source = source ? () => source.read() : null;
    if (source?.initial && usable(source.initial)) {
      this.current = source.initial;
      this.sourced = true;
    }
  }

  /** Takes the source's pair when it is new and loads; true when it is now in use. */
  async refresh(why: string): Promise<boolean> {
    if (!this.source) return false;
    let next: TlsFiles | null;
    try {
      next = await this.source();
    } catch (err) {
      this.log.log('error', 'stored certificate not read; the one in use stays', {
        why,
        error: (err as Error).message,
      });
      return false;
    }
    if (!next || (next.cert === this.current.cert && next.key === this.current.key)) return false;
    if (!usable(next)) {
      this.log.log('error', 'stored certificate does not load; the one in use stays', { why });
      return false;
    }
    this.sourced = true;
    this.apply(next, why, 'the store');
    return true;
  }

  private apply(next: TlsFiles, why: string, from: string): void {
    this.current = next;
    for (const update of this.users) update(next);
    this.log.log('info', 'certificate reloaded', { why, from });
  }

  get tls(): TlsFiles {
    return this.current;
  }

  /** Registers a server's way to take a new certificate. */
  use(update: (tls: TlsFiles) => void): void {
    this.users.push(update);
  }

  /** Size and time of both files: what a replacement changes. */
  private stampNow(): string {
    try {
      return [this.paths.cert, this.paths.key]
        .map((p) => {
          const s = statSync(p);
          return `${s.size}:${s.mtimeMs}:${s.ino}`;
        })
        .join('|');
    } catch {
      return '';
    }
  }

  /** Reads the files again (and asks the source); true when a new certificate from the files is now in use. */
  reload(why: string): boolean {
    if (this.source) void this.refresh(why);
    if (this.sourced) return false;
    this.stamp = this.stampNow();
    let next: TlsFiles;
    try {
      next = { cert: readFileSync(this.paths.cert, 'utf8'), key: readFileSync(this.paths.key, 'utf8') };
      // Refused here, before any server has it: a key that does not match the certificate throws.
      createSecureContext(next);
    } catch (err) {
      this.log.log('error', 'certificate not reloaded; the one in use stays', {
        why,
        cert: this.paths.cert,
        error: (err as Error).message,
      });
      return false;
    }
    if (next.cert === this.current.cert && next.key === this.current.key) {
      this.log.log('info', 'certificate unchanged', { why, cert: this.paths.cert });
      return false;
    }
    this.apply(next, why, this.paths.cert);
    return true;
  }

  /** Checks the files every `ms` and reloads when they changed. */
  watch(ms: number): void {
    this.timer = setInterval(() => {
      if (this.source) void this.refresh('the store has a new certificate');
      if (!this.sourced && this.stampNow() !== this.stamp) this.reload('the files changed');
    }, ms);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
