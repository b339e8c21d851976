/**
 * Works the queue: leases due entries, hands local recipients to the MDA over
 * LMTP, records one result per recipient, retries temporary failures with
 * backoff, and returns a DSN to the sender for permanent failures.
 *
 * Invariants:
 * - An entry is worked only under a lease (store.leaseQueue), so several MTA
 *   processes can share one queue.
 * - Our queue id travels to the MDA as ENVID, so a crash between the MDA's
 *   reply and `recordAttempt` cannot deliver a message twice.
 * - A DSN is queued before the attempt is recorded: after a crash the sender
 *   may get a bounce twice, never not at all. Never a DSN to `<>`.
 */
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { isSieveRefusal, markedAsSpam, srsForward } from '@mailwerk/smtp';
import {
  contentId,
  deliveryEnvid,
  type Expansion,
  expandRecipient,
  expansionRefusal,
  formatReply,
  isStoreError,
  type MailStore,
  makeReply,
  parseReply,
  type QueueEntry,
  type RecipientResult,
} from '@mailwerk/store';
import { buildDsn, type DsnRecipient } from './dsn.ts';
import { LmtpClient, type LmtpReply, type LmtpTarget } from './lmtp-client.ts';
import type { OutboundDelivery } from './outbound.ts';
import { defaultRemoteRetryPolicy, defaultRetryPolicy, type RetryPolicy } from './schedule.ts';
import { ourAuthenticationResults } from './trust.ts';

/** One recipient's result, with what the reports need to know beyond what the store keeps. */
type Outcome = RecipientResult & {
  /** Went to a remote server without DSN: ours to report a success, as "relayed". */
  relayed?: boolean;
  /** An alias, delivered to what it expands to (RFC 3464 §2.3.3 "expanded"). */
  expanded?: boolean;
  /** Waiting because the MDA could not be reached at all (not because it answered 4xx). */
  mdaDown?: boolean;
};

export interface QueueRunnerOptions {
  store: MailStore;
  hostname: string;
  lmtp: LmtpTarget;
  isLocalDomain(domain: string): Promise<boolean>;
  retry?: RetryPolicy;
  /** Delivery to other domains; without it their recipients wait (451 4.4.0). */
  outbound?: OutboundDelivery;
  /** Retries when a remote recipient is still pending (default 5 min growing to 4 h). */
  remoteRetry?: RetryPolicy;
  /**
   * After this long in the queue, the sender is told once that the message is
   * delayed (an RFC 3464 report with Action: delayed). 0: never (the default, as Postfix's delay_warning_time).
   */
  delayWarningMs?: number;
  /** How long a lease lasts; an entry whose worker died is picked up again after this. */
  leaseMs?: number;
  /** Entries worked at once. */
  concurrency?: number;
  /**
   * Messages delivered at once while their client waits (deliverNow, the MX); more wait in the queue.
   * Each holds an LMTP session to the MDA.
   */
  directConcurrency?: number;
  /** How often to look for due entries when nobody calls wake(). */
  pollMs?: number;
  /**
   * After the MDA could not be reached, local delivery pauses this long
   * (doubling up to 60 s while it stays down) instead of every due entry
   * failing on its own connection attempt.
   */
  mdaPauseMs?: number;
  now?: () => Date;
  onError?: (err: unknown, context: string) => void;
  /**
   * DKIM signer (createDkimSigner): the reports we write (bounces, delay warnings, success reports) are
   * signed like the users' mail, with the keys of the host name's domain or the nearest parent that has
   * keys, so their From: (MAILER-DAEMON@host) aligns for DMARC.
   */
  sign?: (message: Buffer, domain: string) => Promise<string>;
  /** ARC sealer (createArcSealer) for mail an alias forwards to other domains; none: forwarded as it came. */
  seal?: (message: Buffer, domain: string) => Promise<string>;
  /** Called after every attempt with one result per recipient tried (for the log). */
  onAttempt?: (entry: QueueEntry, results: RecipientResult[]) => void;
}

/**
 * Whether a process of this host still runs. A zombie (exited, not yet
 * reaped, as an orphan is where nothing reaps it) answers kill(pid, 0) but
 * holds nothing: it counts as dead.
 */
/** How often a paused runner looks whether the MDA answers again. */
const MDA_PROBE_MS = 2_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state …"; the comm may hold spaces and parentheses, so read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true; // No /proc (not Linux): kill(pid, 0) is all there is.
  }
}

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

/**
 * Whether the sender of a message is known not to be forged: one of our users (it came through
 * submission), or our own Authentication-Results (the MX removes any other claiming our name) say SPF or
 * DMARC passed.
 */
function senderVouchedFor(entry: QueueEntry, data: Buffer, hostname: string): boolean {
  if (entry.meta.authUser) return true;
  return /\b(spf|dmarc)=pass\b/i.test(ourAuthenticationResults(data, hostname) ?? '');
}

export class QueueRunner {
  private readonly o: Required<
    Omit<QueueRunnerOptions, 'onError' | 'onAttempt' | 'outbound' | 'sign' | 'seal'>
  > &
    Pick<QueueRunnerOptions, 'onError' | 'onAttempt' | 'outbound' | 'sign' | 'seal'>;
  private readonly owner: string;
  private running = false;
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;
  private pendingWake = false;
  private readonly active = new Set<Promise<void>>();
  /** Local delivery waits until then after the MDA was unreachable. */
  private mdaDownUntil = 0;
  private mdaPause = 0;
  private mdaProbedAt = 0;
  private readonly lmtp: LmtpClient;

  constructor(options: QueueRunnerOptions) {
    this.o = {
      retry: defaultRetryPolicy,
      remoteRetry: defaultRemoteRetryPolicy,
      delayWarningMs: 0,
      leaseMs: 300_000,
      concurrency: 8,
      directConcurrency: 32,
      pollMs: 1_000,
      mdaPauseMs: 2_000,
      now: () => new Date(),
      ...options,
    };
    this.lmtp = new LmtpClient(this.o.lmtp, { hostname: this.o.hostname });
    this.owner = `${osHostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  }

  private recovery: NodeJS.Timeout | null = null;

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.recoverLeases().then(() => this.run());
    // Again every minute: a process of this host that died after this one started (the MTA of a
    // supervisor that was killed, say) holds its leases until they run out otherwise.
    this.recovery = setInterval(() => void this.recoverLeases(), 60_000);
    this.recovery.unref();
  }

  /**
   * Frees leases held by dead processes on this host (a crash or SIGKILL), so
   * their entries are retried now rather than when the lease runs out. Leases
   * of other hosts expire on their own.
   */
  private async recoverLeases(): Promise<void> {
    const host = `${osHostname()}:`;
    try {
      for (const e of await this.o.store.listQueue()) {
        const owner = e.leaseOwner;
        if (!owner?.startsWith(host) || owner === this.owner) continue;
        const pid = Number(owner.slice(host.length).split(':')[0]);
        if (Number.isInteger(pid) && pid > 0 && !processAlive(pid))
          await this.o.store.releaseLease(e.id, owner);
      }
    } catch (err) {
      this.o.onError?.(err, 'lease recovery');
    }
  }

  /** Places taken by claim() for entries being queued, not yet handed over (queued). */
  private claimed = 0;

  /**
   * A lease for an entry about to be queued, when this runner can work it at once (running, a free
   * place, the MDA not known down): the place is held until queued() or unclaim(). Null: queue it
   * unleased and wake() the runner instead.
   */
  claim(): { owner: string; until: Date } | null {
    if (!this.mdaUsable()) return null;
    if (this.active.size + this.claimed >= this.o.concurrency) return null;
    this.claimed++;
    return { owner: this.owner, until: new Date(this.o.now().getTime() + this.o.leaseMs) };
  }

  /** Running, and the MDA neither known down nor being probed after it was: a message can go at once. */
  private mdaUsable(): boolean {
    return this.running && this.mdaDownUntil <= Date.now() && this.mdaPause === 0;
  }

  /** The place of a claim whose entry was not queued after all. */
  unclaim(): void {
    this.claimed = Math.max(0, this.claimed - 1);
  }

  /**
   * A new entry was queued: worked at once when it was queued with this runner's claim() (leased to
   * it already), else the runner looks at the queue.
   */
  queued(entry: QueueEntry): void {
    if (entry.leaseOwner !== this.owner) {
      this.wake();
      return;
    }
    this.unclaim();
    if (!this.running) {
      // Stopping: given back, for the next start (or another process) to take.
      void this.o.store
        .releaseLease(entry.id, this.owner)
        .catch((err) => this.o.onError?.(err, `queue entry ${entry.id}`));
      return;
    }
    this.begin(entry);
  }

  private begin(entry: QueueEntry): void {
    const job = this.work(entry).catch((err) => this.o.onError?.(err, `queue entry ${entry.id}`));
    this.active.add(job);
    void job.finally(() => {
      this.active.delete(job);
      this.wakeUp?.();
    });
  }

  /** Looks at the queue now (after a new message was queued). */
  wake(): void {
    this.pendingWake = true;
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.recovery) clearInterval(this.recovery);
    this.wakeUp?.();
    await this.loop;
    await Promise.all(this.active);
    this.lmtp.close();
    this.o.outbound?.close();
  }

  private sleep(ms: number): Promise<void> {
    if (this.pendingWake) {
      this.pendingWake = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        this.wakeUp = null;
        this.pendingWake = false;
        done();
      };
    });
  }

  private async run(): Promise<void> {
    while (this.running) {
      const paused = this.mdaDownUntil - Date.now();
      if (paused > 0) {
        // A session attempt every couple of seconds ends the pause as soon as the MDA answers again,
        // however long the pause had grown; it costs a connect and writes no log line.
        const probeIn = this.mdaProbedAt + MDA_PROBE_MS - Date.now();
        if (probeIn > 0) await this.sleep(Math.min(paused, probeIn));
        else {
          this.mdaProbedAt = Date.now();
          if (await this.lmtp.reachable()) this.mdaDownUntil = 0;
        }
        continue;
      }
      // After a pause for an unreachable MDA, one entry goes first to see whether it is back; the
      // others wait for its answer instead of all trying (and failing) at once.
      const free =
        this.mdaPause > 0
          ? this.active.size === 0
            ? 1
            : 0
          : this.o.concurrency - this.active.size - this.claimed;
      let leased: QueueEntry[] = [];
      if (free > 0) {
        try {
          this.pendingWake = false;
          leased = await this.o.store.leaseQueue({
            owner: this.owner,
            leaseMs: this.o.leaseMs,
            limit: free,
            now: this.o.now(),
          });
        } catch (err) {
          this.o.onError?.(err, 'queue lease');
        }
      }
      for (const entry of leased) {
        // The store set it aside (its row does not read back); it says so once, here.
        if (entry.quarantined) {
          this.o.onError?.(new Error(entry.quarantined), `queue entry ${entry.id} quarantined`);
          continue;
        }
        this.begin(entry);
      }
      if (leased.length === 0 || this.active.size + this.claimed >= this.o.concurrency)
        await this.sleep(this.o.pollMs);
    }
  }

  /** One attempt at every pending recipient of an entry. */
  async work(entry: QueueEntry): Promise<void> {
    const { store } = this.o;
    const now = this.o.now();
    const pending = entry.recipients.filter((r) => r.state === 'pending');
    const local: string[] = [];
    const remote = new Map<string, typeof pending>();
    const results: Outcome[] = [];
    for (const r of pending) {
      const domain = domainOf(r.address);
      if (await this.o.isLocalDomain(domain)) local.push(r.address);
      else if (!this.o.outbound)
        results.push({
          address: r.address,
          state: 'pending',
          reply: makeReply(451, '4.4.0', 'delivery to other domains is not configured here'),
        });
      else remote.set(domain, [...(remote.get(domain) ?? []), r]);
    }
    let data: Buffer | null = null;
    if (remote.size > 0 && this.o.outbound) {
      const outbound = this.o.outbound;
      data = await store.blobs.get(entry.blobId);
      const message = data;
      const ret = entry.meta.ret === 'FULL' || entry.meta.ret === 'HDRS' ? entry.meta.ret : undefined;
      const perDomain = await Promise.all(
        [...remote].map(([domain, rcpts]) =>
          outbound.deliver(domain, {
            sender: entry.sender,
            recipients: rcpts.map((r) => ({
              address: r.address,
              ...(r.orcpt ? { orcpt: r.orcpt } : {}),
              ...(r.notify ? { notify: r.notify } : {}),
            })),
            data: message,
            ...(typeof entry.meta.envid === 'string' ? { envid: entry.meta.envid } : {}),
            ...(ret ? { ret } : {}),
          }),
        ),
      );
      results.push(...perDomain.flat());
    }
    if (local.length > 0) {
      data ??= await store.blobs.get(entry.blobId);
      results.push(...(await this.deliverLocal(entry, local, data)));
    }
    // Past the maximum age, what is still temporary becomes final (RFC 3463 4.4.7).
    const maxAgeMs = remote.size > 0 ? this.o.remoteRetry.maxAgeMs : this.o.retry.maxAgeMs;
    const expired = now.getTime() - entry.createdAt.getTime() >= maxAgeMs;
    for (const r of results) {
      if (expired && r.state === 'pending') {
        r.state = 'failed';
        const last = r.reply ?? makeReply(451, '4.4.7', 'no reply');
        r.reply = {
          ...last,
          text: `${last.text} (gave up: 4.4.7 message expired after ${Math.round(maxAgeMs / 3_600_000)} hours in the queue)`,
        };
      }
    }
    const failures = results.filter((r) => r.state === 'failed');
    if (failures.length > 0) await this.report(entry, failures, 'failed', data);
    // RFC 3461 §4.1: NOTIFY=SUCCESS asks for a report of delivery; a remote server that took DSN reports it itself.
    const successes = results.filter(
      (r) => r.state === 'delivered' && (r.relayed || r.expanded || local.includes(r.address)),
    );
    if (successes.length > 0) await this.report(entry, successes, 'success', data);
    const waiting = results.filter((r) => r.state === 'pending');
    const warned =
      this.o.delayWarningMs > 0 &&
      waiting.length > 0 &&
      !entry.meta.delayNotified &&
      now.getTime() - entry.createdAt.getTime() >= this.o.delayWarningMs;
    if (warned) await this.report(entry, waiting, 'delayed', data);
    // Only remote recipients waiting: the remote schedule; a local one waiting (the MDA down): the quicker one.
    const policy = waiting.some((r) => local.includes(r.address)) ? this.o.retry : this.o.remoteRetry;
    // Waiting only for the MDA to come up (a start where the MTA listens first, a restart of the MDA):
    // due again at once, and the pause for the unreachable MDA decides when (it ends when the MDA
    // answers; after it, one entry tries first), not a whole backoff step.
    const nextAttemptAt =
      waiting.length > 0 && waiting.every((r) => r.mdaDown)
        ? now
        : new Date(now.getTime() + policy.delayMs(entry.attempts + 1));
    try {
      // Removes the entry when no recipient is left pending.
      await store.recordAttempt(entry.id, this.owner, {
        results: results.map(({ address, state, reply }) => ({
          address,
          state,
          ...(reply ? { reply } : {}),
        })),
        nextAttemptAt,
        ...(warned ? { meta: { delayNotified: true } } : {}),
      });
      this.o.onAttempt?.(entry, results);
    } catch (err) {
      if (isStoreError(err, 'lease_lost')) return; // Another worker owns it now.
      throw err;
    }
  }

  /** Each local recipient's accounts (with their tags) and outside targets; a refusal for one that has none. */
  private async expand(
    local: string[],
    known: ReadonlyMap<string, Expansion> = new Map(),
  ): Promise<{
    plans: Array<{ address: string; members: string[]; external: string[] }>;
    results: Outcome[];
  }> {
    const results: Outcome[] = [];
    const plans: Array<{ address: string; members: string[]; external: string[] }> = [];
    for (const address of local) {
      try {
        const e = known.get(address) ?? (await expandRecipient(this.o.store, address, this.o.isLocalDomain));
        const members = e.accounts.map(({ account, tag }) =>
          tag ? account.address.replace('@', `+${tag}@`) : account.address,
        );
        plans.push({ address, members, external: e.external });
      } catch (err) {
        const reply =
          expansionRefusal(err, address) ??
          makeReply(
            451,
            '4.3.0',
            `<${address}> lookup failed: ${err instanceof Error ? err.message : String(err)}`,
          );
        results.push({ address, state: reply.code >= 500 ? 'failed' : 'pending', reply });
      }
    }
    return { plans, results };
  }

  /** Deliveries of deliverNow under way. */
  private direct = 0;

  /**
   * Local delivery while the MX's client waits for its reply to DATA, of a message not queued (`entry`
   * as newQueueEntry makes it, nothing stored): true when every recipient has it, and then it is never
   * queued. The MDA answers 250 only after its synced commit, so a 250 to the client after this keeps
   * the promise that what was answered 250 is on disk, one synced write a message instead of the
   * queue's. False when any part needs the queue: a domain not local, a NOTIFY=SUCCESS report to
   * write, an alias with outside members, a failed lookup, a recipient refused or deferred, the MDA
   * down or as busy as `directConcurrency` deliveries. Nothing done here is done twice then: the only
   * thing it may have done is the LMTP delivery, under the delivery key of `entry.id`, and the caller
   * queues the message under that id, so the MDA does not store it again for whom it already did.
   * `expanded`: recipients already expanded (the MX's at RCPT, seconds ago), not looked up again.
   */
  async deliverNow(
    entry: QueueEntry,
    data: Buffer,
    expanded: ReadonlyMap<string, Expansion> = new Map(),
  ): Promise<boolean> {
    if (!this.mdaUsable() || this.direct >= this.o.directConcurrency) return false;
    const pending = entry.recipients;
    if (pending.some((r) => r.state !== 'pending' || r.notify?.includes('SUCCESS'))) return false;
    this.direct++;
    try {
      // A recipient the MX expanded at RCPT is local (its domain was checked there); another is looked up.
      for (const r of pending)
        if (!expanded.has(r.address) && !(await this.o.isLocalDomain(domainOf(r.address)))) return false;
      const { plans, results } = await this.expand(
        pending.map((r) => r.address),
        expanded,
      );
      if (results.length > 0 || plans.some((p) => p.external.length > 0 || p.members.length === 0))
        return false;
      let replies: LmtpReply[];
      try {
        replies = await this.lmtp.deliver({
          sender: entry.sender,
          recipients: [...new Set(plans.flatMap((p) => p.members))],
          data,
          envid: await deliveryEnvid(this.o.store, entry.id),
        });
      } catch (err) {
        this.mdaUnreachable(err);
        return false;
      }
      const byMember = new Map(replies.map((r) => [r.address, r]));
      if (replies.some((r) => r.code >= 300)) return false;
      this.o.onAttempt?.(
        entry,
        plans.map((plan) =>
          this.delivered(
            plan,
            plan.members.map((m) => byMember.get(m)!),
          ),
        ),
      );
      return true;
    } finally {
      this.direct--;
    }
  }

  /** The result of a local recipient that went to the MDA: the MDA's own reply, or what it became. */
  private delivered(
    plan: { address: string; members: string[]; external: string[] },
    replies: LmtpReply[],
  ): Outcome {
    const took = replies.filter((r) => r.code < 300);
    const direct =
      plan.members.length === 1 && plan.members[0] === plan.address && plan.external.length === 0;
    const reply = direct
      ? parseReply(took[0]!.text)
      : makeReply(
          250,
          '2.1.5',
          `<${plan.address}> expanded: ${[
            ...plan.members.map((m, i) => `${m} ${replies[i]!.text}`),
            ...plan.external.map((x) => `${x} queued for forwarding`),
          ].join('; ')}`,
        );
    return { address: plan.address, state: 'delivered', reply, ...(direct ? {} : { expanded: true }) };
  }

  /**
   * Local recipients: each is expanded here, in the MTA (aliases, catch-alls,
   * plus-addresses), and only account addresses go to the MDA over LMTP, so
   * the MDA never has to queue anything (and can stand behind another MTA).
   * An alias's outside targets become a queue entry of their own, once the
   * alias's local part is final (not on every retry). An alias's result is
   * its members': one waiting makes it wait (the others are not stored twice:
   * the delivery key), all refusing make it fail, else it is delivered.
   */
  private async deliverLocal(entry: QueueEntry, local: string[], data: Buffer): Promise<Outcome[]> {
    const { store } = this.o;
    const { plans, results } = await this.expand(local);
    const members = [...new Set(plans.flatMap((p) => p.members))];
    const byMember = new Map<string, LmtpReply>();
    let mdaDown = false;
    if (members.length > 0) {
      try {
        if (Date.now() < this.mdaDownUntil) throw new Error('not reachable a moment ago; paused');
        const replies = await this.lmtp.deliver({
          sender: entry.sender,
          recipients: members,
          data,
          envid: await deliveryEnvid(store, entry.id),
        });
        for (const r of replies) byMember.set(r.address, r);
        this.mdaPause = 0;
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        mdaDown = true;
        this.mdaUnreachable(err);
        for (const m of members)
          byMember.set(m, {
            address: m,
            code: 451,
            text: `451 4.4.1 mail delivery agent unavailable: ${why}`,
          });
      }
    }
    for (const plan of plans) {
      const replies = plan.members.map((m) => byMember.get(m)!);
      const waiting = replies.find((r) => r.code >= 400 && r.code < 500);
      if (waiting) {
        results.push({
          address: plan.address,
          state: 'pending',
          reply: parseReply(waiting.text),
          ...(mdaDown ? { mdaDown } : {}),
        });
        continue;
      }
      const took = replies.filter((r) => r.code < 300);
      if (took.length === 0 && plan.external.length === 0) {
        results.push({
          address: plan.address,
          state: 'failed',
          reply: replies[0] ? parseReply(replies[0].text) : makeReply(550, '5.1.1', 'nothing to deliver to'),
        });
        continue;
      }
      if (plan.external.length > 0 && markedAsSpam(data)) {
        // Forwarding spam would make this server a spam source to the receiving domain: not sent on.
        this.o.onError?.(
          new Error(`not forwarded to ${plan.external.join(', ')}: marked as spam`),
          `alias <${plan.address}> in entry ${entry.id}`,
        );
        plan.external = [];
        if (took.length === 0) {
          results.push({
            address: plan.address,
            state: 'delivered',
            reply: makeReply(250, '2.1.5', `<${plan.address}> marked as spam: not forwarded`),
            expanded: true,
          });
          continue;
        }
      }
      if (plan.external.length > 0) {
        try {
          const seal = this.o.seal ? await this.o.seal(data, domainOf(plan.address)) : '';
          const sealed = seal ? Buffer.concat([Buffer.from(seal, 'latin1'), data]) : null;
          await store.enqueue({
            sender: await this.forwardSender(entry.sender, plan.address),
            recipients: plan.external.map((address) => ({ address })),
            ...(sealed
              ? { blobId: contentId(sealed), data: sealed, size: sealed.length }
              : { blobId: entry.blobId, size: data.length }),
            meta: { origin: 'alias', via: plan.address, from: entry.id },
          });
          this.wake();
        } catch (err) {
          results.push({
            address: plan.address,
            state: 'pending',
            reply: makeReply(
              451,
              '4.3.0',
              `<${plan.address}> could not queue the forward: ${err instanceof Error ? err.message : String(err)}`,
            ),
          });
          continue;
        }
      }
      results.push(this.delivered(plan, replies));
    }
    return results;
  }

  /**
   * The envelope sender of mail an alias forwards outside: rewritten by SRS at the alias's domain
   * (packages/smtp/src/srs.ts) so that SPF passes at the receiver and a bounce comes back here to be
   * returned; a sender of one of our own domains and the null sender stay as they are.
   */
  private async forwardSender(sender: string, via: string): Promise<string> {
    if (sender === '' || (await this.o.isLocalDomain(domainOf(sender)))) return sender;
    return srsForward(sender, domainOf(via), { secret: await this.o.store.secret('srs') });
  }

  private mdaUnreachable(err: unknown): void {
    if (Date.now() < this.mdaDownUntil) return;
    this.mdaPause = Math.min(this.mdaPause ? this.mdaPause * 2 : this.o.mdaPauseMs, 60_000);
    this.mdaDownUntil = Date.now() + this.mdaPause;
    this.mdaProbedAt = Date.now();
    this.o.onError?.(
      err,
      `MDA unreachable at ${this.o.lmtp}; local delivery paused for ${this.mdaPause / 1000} s`,
    );
  }

  /** The report with a DKIM-Signature in front, when the host name's domain (or a parent) has keys. */
  private async signReport(dsn: Buffer): Promise<Buffer> {
    if (!this.o.sign) return dsn;
    const labels = this.o.hostname.toLowerCase().split('.');
    for (let i = 0; i <= labels.length - 2; i++) {
      try {
        const signature = await this.o.sign(dsn, labels.slice(i).join('.'));
        if (signature) return Buffer.concat([Buffer.from(signature), dsn]);
      } catch (err) {
        this.o.onError?.(err, 'DKIM signing of a report');
        return dsn;
      }
    }
    return dsn;
  }

  /**
   * A report to the sender (RFC 3464): a bounce, a delay warning, or (for
   * NOTIFY=SUCCESS) a delivery report, as each recipient's NOTIFY asks.
   */
  private async report(
    entry: QueueEntry,
    which: Outcome[],
    kind: 'failed' | 'delayed' | 'success',
    data: Buffer | null,
  ): Promise<void> {
    // RFC 3461 §4.1: never a DSN for the null sender; without NOTIFY, FAILURE and DELAY only.
    if (entry.sender === '') return;
    if (kind === 'failed') {
      // A recipient's Sieve reject after our MX took the message (RFC 5429 §2.1) becomes a bounce only
      // to a sender known not to be forged; to anyone else it would be backscatter.
      const rejected = which.filter((f) => f.reply && isSieveRefusal(f.reply));
      if (rejected.length) {
        const original = data ?? (await this.o.store.blobs.get(entry.blobId));
        if (!senderVouchedFor(entry, original, this.o.hostname)) {
          this.o.onError?.(
            new Error(
              `no bounce to <${entry.sender}> for ${rejected.map((f) => f.address).join(', ')}: the sender is not authenticated`,
            ),
            `sieve reject of entry ${entry.id}`,
          );
          which = which.filter((f) => !rejected.includes(f));
        }
      }
    }
    const wanted = kind === 'failed' ? 'FAILURE' : kind === 'delayed' ? 'DELAY' : 'SUCCESS';
    const recipients: DsnRecipient[] = [];
    for (const f of which) {
      const r = entry.recipients.find((x) => x.address === f.address);
      const notify = r?.notify ?? ['FAILURE', 'DELAY'];
      if (!notify.includes(wanted)) continue;
      const status =
        f.reply?.enhanced ?? (kind === 'failed' ? '5.0.0' : kind === 'delayed' ? '4.0.0' : '2.0.0');
      recipients.push({
        address: f.address,
        orcpt: r?.orcpt,
        action: kind === 'success' ? (f.relayed ? 'relayed' : f.expanded ? 'expanded' : 'delivered') : kind,
        status:
          kind === 'failed'
            ? status.replace(/^4/, '5')
            : kind === 'delayed'
              ? status.replace(/^5/, '4')
              : status.replace(/^[45]/, '2'),
        diagnostic: f.reply ? formatReply(f.reply) : kind,
      });
    }
    if (recipients.length === 0) return;
    const original = data ?? (await this.o.store.blobs.get(entry.blobId));
    const dsn = buildDsn({
      reportingMta: this.o.hostname,
      to: entry.sender,
      originalMessage: original,
      arrivalDate: entry.createdAt,
      envid: typeof entry.meta.envid === 'string' ? entry.meta.envid : undefined,
      returnFull: entry.meta.ret === 'FULL',
      recipients,
    });
    const signed = await this.signReport(dsn);
    await this.o.store.enqueue({
      sender: '',
      recipients: [{ address: entry.sender }],
      blobId: contentId(signed),
      data: signed,
      size: signed.length,
      meta: { dsnFor: entry.id },
    });
    this.wake();
  }
}
