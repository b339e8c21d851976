// The counters of supervised services, kept by the supervisor and asked over Node's IPC channel, and the
// change events they publish: a real child process makes the calls (IpcCounters) and publishes (IpcBus),
// this process answers as the supervisor does (answerCounter over InProcessCounters). Calls and events
// of one turn go in one message, in order; events, those of a short window (BUS_WINDOW_MS).
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { InProcessCounters } from '@mailwerk/limits';
import { answerCounter, type ChildMessage } from '../src/ipc.ts';

describe('counters over IPC', () => {
  it('sends the calls of one turn in one message and answers each in order', async () => {
    const child = fork(join(import.meta.dirname, 'fixtures', 'counter-child.ts'), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const counters = new InProcessCounters();
    const batches: number[] = [];
    const done = new Promise<{ together: number[]; alone: number; failed: string }>((resolve) =>
      child.on(
        'message',
        (
          m: ChildMessage | { t: 'up' } | { t: 'done'; together: number[]; alone: number; failed: string },
        ) => {
          if (m.t === 'up') child.send({ t: 'go' });
          else if (m.t === 'done') resolve(m);
          else if (m.t === 'counter') {
            batches.push(m.calls.length);
            // A call the store cannot answer is refused to its caller alone.
            if (m.calls.some((c) => c.op === 'get'))
              counters.get = () => Promise.reject(new Error('no such counter'));
            void answerCounter(counters, m).then((r) => child.send(r));
          }
        },
      ),
    );
    try {
      const r = await done;
      assert.deepEqual(r.together, [1, 2, 2]);
      assert.equal(r.alone, 2);
      assert.equal(r.failed, 'refused: Error: no such counter');
      assert.deepEqual(batches, [3, 1, 1]);
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });

  it('sends the events published within the window in one message, and hands those it is sent to its subscribers', async () => {
    const child = fork(join(import.meta.dirname, 'fixtures', 'counter-child.ts'), {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const got: number[][] = [];
    const messages = new Map<string, (m: unknown) => void>();
    const next = (t: string) => new Promise<unknown>((resolve) => messages.set(t, resolve));
    child.on('message', (m: { t: string; events?: Array<{ uid: number }> }) => {
      if (m.t === 'bus') got.push(m.events!.map((e) => e.uid));
      messages.get(m.t)?.(m);
    });
    try {
      await next('up');
      child.send({ t: 'publish' });
      const deadline = Date.now() + 10_000;
      while (got.flat().length < 5 && Date.now() < deadline) await new Promise((r) => setImmediate(r));
      assert.deepEqual(got, [[1, 2, 3, 4], [5]]);
      // From the supervisor: another process's events, to this one's subscribers, in order.
      child.send({
        t: 'bus',
        events: [7, 8].map((uid) => ({
          type: 'message.new',
          accountId: 'a1',
          mailboxId: 'm1',
          uid,
          modseq: uid,
        })),
      });
      const heard = next('heard');
      child.send({ t: 'heard' });
      assert.deepEqual(((await heard) as { uids: number[] }).uids, [1, 2, 3, 4, 5, 7, 8]);
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });
});
