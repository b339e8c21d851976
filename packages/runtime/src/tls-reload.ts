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

export class TlsReloader {
  private readonly paths: { cert: string; key: string };
  private readonly log: Logger;
  private current: TlsFiles;
  private stamp: string;
  private readonly users: Array<(tls: TlsFiles) => void> = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(paths: { cert: string; key: string }, initial: TlsFiles, log: Logger) {
    this.paths = paths;
    this.current = initial;
    this.log = log;
    this.stamp = this.stampNow();
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

  /** Reads the files again; true when a new certificate is now in use. */
  reload(why: string): boolean {
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
    this.current = next;
    for (const update of this.users) update(next);
    this.log.log('info', 'certificate reloaded', { why, cert: this.paths.cert });
    return true;
  }

  /** Checks the files every `ms` and reloads when they changed. */
  watch(ms: number): void {
    this.timer = setInterval(() => {
      if (this.stampNow() !== this.stamp) this.reload('the files changed');
    }, ms);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }
}
