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

/** One counter call of a child, and its answer. */
export interface CounterCall {
  id: number;
  op: CounterOp;
  args: unknown[];
}
export interface CounterAnswer {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

/** Child → supervisor. */
export type ChildMessage =
  | { t: 'ready'; listening: Listening[] }
  | { t: 'failed'; message: string; code?: string; address?: string }
  | { t: 'alive'; activity: string | null; since: number }
  /** Change events a child published within BUS_WINDOW_MS of the first, in order. */
  | { t: 'bus'; events: MailEvent[] }
  /** The counter calls a child made in one turn of its event loop, in order (one message, one answer). */
  | { t: 'counter'; calls: CounterCall[] }
  /** The process's metrics, as prom-client's getMetricsAsJSON gives them (an answer to 'metrics'). */
  | { t: 'metrics'; id: number; metrics: unknown[] };

/** Supervisor → child. */
export type ParentMessage =
  /** The configuration, read and checked once by the supervisor (the child then needs no parser and no schema). */
  | { t: 'config'; config: Config }
  | { t: 'bus'; events: MailEvent[] }
  | { t: 'counter-result'; answers: CounterAnswer[] }
  | { t: 'metrics'; id: number }
  /** Read the certificate files again (SIGHUP to the supervisor, `mailwerk reload`). */
  | { t: 'reload'; why: string; config?: Config }
  | { t: 'stop' };

type Send = (m: ChildMessage) => void;

const send: Send = (m) => {
  // A supervisor that went away: nothing to tell (the child stops on 'disconnect').
  if (process.connected) process.send?.(m);
};

/** Items handed over until `wait` calls back, given to `flush` then as one batch, in order. */
function gathered<T>(flush: (items: T[]) => void, wait: (go: () => void) => void): (item: T) => void {
  let batch: T[] = [];
  return (item) => {
    if (batch.push(item) === 1)
      wait(() => {
        const items = batch;
        batch = [];
        flush(items);
      });
  };
}

/**
 * How long a child gathers change events before it hands them to the supervisor, from the first one. Each
 * message costs a write here, a wake-up of the supervisor and of the process it relays to, and a parse in
 * both: sent once per group commit they took about a twentieth of the services' CPU under a delivery
 * load (bench/README.md, "Change events gathered"). An IMAP session told of new mail 10 ms later cannot tell.
 */
export const BUS_WINDOW_MS = 10;

/**
 * The bus of a supervised child: local subscribers at once, and every event to the supervisor for the
 * others, those published within BUS_WINDOW_MS of the first in one message, in order.
 */
export class IpcBus extends InProcessBus {
  private readonly relay = gathered<MailEvent>(
    (events) => send({ t: 'bus', events }),
    (go) => void setTimeout(go, BUS_WINDOW_MS).unref(),
  );

  override async publish(event: MailEvent): Promise<void> {
    this.deliver(event);
    this.relay(event);
  }
}

/**
 * Counters kept by the supervisor, asked over IPC. The calls made in one turn of the event loop go in one
 * message (the MX asks two at each connection): each message costs a write on both sides and a wake-up
 * of the supervisor, which showed in the MX's CPU profile.
 */
export class IpcCounters implements Counters {
  private next = 0;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  // The calls of one turn of the event loop, sent at its end.
  private readonly ask = gathered<CounterCall>((calls) => send({ t: 'counter', calls }), queueMicrotask);

  /** Answers from the supervisor. */
  settle(m: Extract<ParentMessage, { t: 'counter-result' }>): void {
    for (const a of m.answers) {
      const p = this.pending.get(a.id);
      if (!p) continue;
      this.pending.delete(a.id);
      if (a.ok) p.resolve(a.value);
      else p.reject(new Error(a.error ?? 'counter call failed'));
    }
  }

  private call<T>(op: CounterOp, args: unknown[]): Promise<T> {
    if (!process.connected) return Promise.reject(new Error('the supervisor is gone'));
    const id = ++this.next;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.ask({ id, op, args });
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

/** The supervisor's side of the counters: runs a child's calls, in order, on the one store of counts. */
export async function answerCounter(
  counters: InProcessCounters,
  m: Extract<ChildMessage, { t: 'counter' }>,
): Promise<ParentMessage> {
  const answers: CounterAnswer[] = [];
  for (const call of m.calls) answers.push(await answerCall(counters, call));
  return { t: 'counter-result', answers };
}

async function answerCall(counters: InProcessCounters, call: CounterCall): Promise<CounterAnswer> {
  try {
    const a = call.args;
    let value: unknown;
    switch (call.op) {
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
    return { id: call.id, ok: true, value };
  } catch (err) {
    return { id: call.id, ok: false, error: String(err) };
  }
}
