/**
 * The supervised processes of `mailwerk start` talk to the supervisor over
 * Node's IPC channel: change events go through it to the other processes
 * (the local notification channel, where the shared setup has Redis), and
 * the abuse counters live in it, so the MX, submission, IMAP and POP3 count
 * one client's failed sign-ins together, as they did in one process.
 *
 * Events stay hints (the journal is the truth, read on a poll too); a
 * counter call that cannot be answered (the supervisor is gone) fails, and
 * the caller treats it as a store error would be treated.
 */
import { InProcessBus, type MailEvent } from '@mailwerk/bus';
import type { Config } from '@mailwerk/config';
import type { Counters, InProcessCounters } from '@mailwerk/limits';
import type { Listening } from './listen.ts';

export type CounterOp = 'hit' | 'count' | 'ttl' | 'reset' | 'put' | 'get';

/** Child → supervisor. */
export type ChildMessage =
  | { t: 'ready'; listening: Listening[] }
  | { t: 'failed'; message: string; code?: string; address?: string }
  | { t: 'alive'; activity: string | null; since: number }
  | { t: 'bus'; event: MailEvent }
  | { t: 'counter'; id: number; op: CounterOp; args: unknown[] }
  /** The process's metrics, as prom-client's getMetricsAsJSON gives them (an answer to 'metrics'). */
  | { t: 'metrics'; id: number; metrics: unknown[] };

/** Supervisor → child. */
export type ParentMessage =
  /** The configuration, read and checked once by the supervisor (the child then needs no parser and no schema). */
  | { t: 'config'; config: Config }
  | { t: 'bus'; event: MailEvent }
  | { t: 'counter-result'; id: number; ok: boolean; value?: unknown; error?: string }
  | { t: 'metrics'; id: number }
  /** Read the certificate files again (SIGHUP to the supervisor, `mailwerk reload`). */
  | { t: 'reload'; why: string; config?: Config }
  | { t: 'stop' };

type Send = (m: ChildMessage) => void;

const send: Send = (m) => {
  // A supervisor that went away: nothing to tell (the child stops on 'disconnect').
  if (process.connected) process.send?.(m);
};

/** The bus of a supervised child: local subscribers, and every event to the supervisor for the others. */
export class IpcBus extends InProcessBus {
  override async publish(event: MailEvent): Promise<void> {
    this.deliver(event);
    send({ t: 'bus', event });
  }
}

/** Counters kept by the supervisor, asked over IPC. */
export class IpcCounters implements Counters {
  private next = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  /** An answer from the supervisor. */
  settle(m: Extract<ParentMessage, { t: 'counter-result' }>): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error ?? 'counter call failed'));
  }

  private call<T>(op: CounterOp, args: unknown[]): Promise<T> {
    if (!process.connected) return Promise.reject(new Error('the supervisor is gone'));
    const id = ++this.next;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      send({ t: 'counter', id, op, args });
    });
  }

  hit(key: string, windowMs: number): Promise<number> {
    return this.call('hit', [key, windowMs]);
  }
  count(key: string): Promise<number> {
    return this.call('count', [key]);
  }
  ttl(key: string): Promise<number> {
    return this.call('ttl', [key]);
  }
  reset(key: string): Promise<void> {
    return this.call('reset', [key]);
  }
  put(key: string, value: string, ttlMs: number, onlyIfAbsent?: boolean): Promise<string> {
    return this.call('put', [key, value, ttlMs, onlyIfAbsent ?? false]);
  }
  get(key: string): Promise<string | null> {
    return this.call('get', [key]);
  }
  async close(): Promise<void> {
    for (const p of this.pending.values()) p.reject(new Error('closed'));
    this.pending.clear();
  }
}

/** The supervisor's side of the counters: runs a child's call on the one store of counts. */
export async function answerCounter(
  counters: InProcessCounters,
  m: Extract<ChildMessage, { t: 'counter' }>,
): Promise<ParentMessage> {
  try {
    const a = m.args;
    let value: unknown;
    switch (m.op) {
      case 'hit':
        value = await counters.hit(String(a[0]), Number(a[1]));
        break;
      case 'count':
        value = await counters.count(String(a[0]));
        break;
      case 'ttl':
        value = await counters.ttl(String(a[0]));
        break;
      case 'reset':
        value = await counters.reset(String(a[0]));
        break;
      case 'put':
        value = await counters.put(String(a[0]), String(a[1]), Number(a[2]), Boolean(a[3]));
        break;
      case 'get':
        value = await counters.get(String(a[0]));
        break;
    }
    return { t: 'counter-result', id: m.id, ok: true, value };
  } catch (err) {
    return { t: 'counter-result', id: m.id, ok: false, error: String(err) };
  }
}
