/**
 * Running a compiled script (RFC 5228 §2.10, §4, §5) on one message: pure and synchronous, no I/O; the
 * result is the list of actions the MDA then carries out. The core commands and tests, the fileinto,
 * reject/ereject, envelope, copy, imap4flags (on keep and fileinto), subaddress and relational
 * extensions; anything else a script may name is a SieveRuntimeError, and the caller keeps the message
 * in INBOX (a script never loses mail).
 *
 * Bounded: `:matches` is a two-pointer wildcard match (time proportional to the value times the pattern
 * at worst, never exponential), at most `maxActions` actions and `maxRedirects` redirects (§10), and at
 * most `maxSteps` tests and commands evaluated.
 */
import { parseAddressList, parseHeaderDate } from '@mailwerk/mime';
import type { Argument, Command, Test } from './parser.ts';
import { TAGS_WITH_ARGUMENT } from './validate.ts';

export interface SieveMessage {
  /** The decoded values of a header field (RFC 2047 words decoded by the caller), in order; [] when absent. */
  header(name: string): string[];
  /** The message's size in octets. */
  size: number;
}

export interface SieveEnvelope {
  /** The envelope sender ('' for the null sender <>). */
  from: string;
  /** The recipient this run is for. */
  to: string;
}

export type Action =
  | { type: 'keep'; flags?: string[] }
  | { type: 'fileinto'; mailbox: string; copy: boolean; create: boolean; flags?: string[] }
  | { type: 'redirect'; address: string; copy: boolean }
  | { type: 'discard' }
  | { type: 'reject'; reason: string; ereject: boolean }
  | Vacation;

/** A vacation auto-reply the script asks for (RFC 5230 §4); whether it goes out is the MDA's to decide. */
export interface Vacation {
  type: 'vacation';
  /** The reply's text, or with `mime` a MIME entity (header fields and body). */
  reason: string;
  subject?: string;
  from?: string;
  /** More addresses of the user's, besides the recipient (§4.5). */
  addresses: string[];
  mime: boolean;
  /** What the reply is remembered by (§4.2): `:handle`, else made of the other arguments. */
  handle: string;
  /** How long a sender gets no second reply: :days (§4.1) or :seconds (RFC 6131), within the bounds. */
  seconds: number;
}

export interface RunOptions {
  maxActions?: number;
  maxRedirects?: number;
  maxSteps?: number;
  /** The shortest and longest vacation period, in seconds (default 1 day and 60 days; §4.1). */
  vacationPeriod?: { min: number; max: number };
  /** The time of the run (currentdate, RFC 5260 §5), and the local zone in minutes east of UTC. */
  now?: Date;
  zone?: number;
  /**
   * The user's other scripts, compiled, for `include :personal` (RFC 6609); null when there is no such
   * script. Global scripts are not kept: `include :global` finds none.
   */
  include?: (name: string) => Command[] | null;
  /** How deep includes may nest (RFC 6609 §3.2 leaves the bound to the implementation). */
  maxIncludeDepth?: number;
}

/** A date-part (RFC 5260 §4.2) of an instant seen in a zone (minutes east of UTC). */
export function datePart(time: number, zone: number, part: string): string {
  const d = new Date(time + zone * 60_000);
  const two = (n: number) => String(n).padStart(2, '0');
  const date = `${String(d.getUTCFullYear()).padStart(4, '0')}-${two(d.getUTCMonth() + 1)}-${two(d.getUTCDate())}`;
  const clock = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  const sign = zone < 0 ? '-' : '+';
  const z = `${sign}${two(Math.floor(Math.abs(zone) / 60))}${two(Math.abs(zone) % 60)}`;
  switch (part) {
    case 'year':
      return date.slice(0, 4);
    case 'month':
      return date.slice(5, 7);
    case 'day':
      return date.slice(8, 10);
    case 'date':
      return date;
    // Modified Julian Day: days since 1858-11-17.
    case 'julian':
      return String(Math.floor((time + zone * 60_000) / 86_400_000) + 40_587);
    case 'hour':
      return clock.slice(0, 2);
    case 'minute':
      return clock.slice(3, 5);
    case 'second':
      return clock.slice(6, 8);
    case 'time':
      return clock;
    case 'iso8601':
      return `${date}T${clock}${z.slice(0, 3)}:${z.slice(3)}`;
    case 'std11': {
      const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
      const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
      return `${days[d.getUTCDay()]}, ${two(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${clock} ${z}`;
    }
    case 'zone':
      return z;
    case 'weekday':
      return String(d.getUTCDay());
    default:
      throw new SieveRuntimeError(`unknown date-part "${part}"`);
  }
}

const zoneOf = (z: string): number => {
  const m = /^([+-])(\d{2})(\d{2})$/.exec(z);
  if (!m) throw new SieveRuntimeError(`not a zone: "${z}"`);
  return (m[1] === '-' ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
};

const DAY = 86_400;

export class SieveRuntimeError extends Error {}

type Strings = Extract<Argument, { kind: 'strings' }>;

/** The tags of a command or test, and its positional arguments. */
function split(args: Argument[]): { tags: Map<string, Argument | null>; rest: Argument[] } {
  const tags = new Map<string, Argument | null>();
  const rest: Argument[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.kind === 'tag') tags.set(a.name, TAGS_WITH_ARGUMENT.has(a.name) ? (args[++i] ?? null) : null);
    else rest.push(a);
  }
  return { tags, rest };
}

const strings = (a: Argument | null | undefined): string[] =>
  a?.kind === 'strings' ? (a as Strings).values : [];

/** `*` and `?` of :matches (§2.7.1), with `\` escaping; case folded as the comparator says. */
export function wildcardMatch(value: string, pattern: string): boolean {
  // Tokens of the pattern: literal characters, '?', '*' (escaped ones are literals).
  const p: Array<{ any: boolean; star: boolean; c: string }> = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\' && i + 1 < pattern.length) p.push({ any: false, star: false, c: pattern[++i]! });
    else p.push({ any: c === '?', star: c === '*', c });
  }
  const v = [...value];
  let vi = 0;
  let pi = 0;
  let starP = -1;
  let starV = 0;
  while (vi < v.length) {
    const t = p[pi];
    if (t && !t.star && (t.any || t.c === v[vi])) {
      vi++;
      pi++;
    } else if (t?.star) {
      starP = pi++;
      starV = vi;
    } else if (starP >= 0) {
      pi = starP + 1;
      vi = ++starV;
    } else return false;
  }
  while (p[pi]?.star) pi++;
  return pi === p.length;
}

const RELATIONS: Record<string, (c: number) => boolean> = {
  gt: (c) => c > 0,
  ge: (c) => c >= 0,
  lt: (c) => c < 0,
  le: (c) => c <= 0,
  eq: (c) => c === 0,
  ne: (c) => c !== 0,
};

export function run(
  script: Command[],
  message: SieveMessage,
  envelope: SieveEnvelope,
  options: RunOptions = {},
): Action[] {
  const maxActions = options.maxActions ?? 32;
  const maxRedirects = options.maxRedirects ?? 4;
  let steps = options.maxSteps ?? 100_000;
  const actions: Action[] = [];
  let cancelled = false;
  let flags: string[] = [];
  let stopped = false;
  /** `return` (RFC 6609 §3.3): ends the script it is in; the includer goes on. */
  let returned = false;
  const now = options.now ?? new Date();
  const localZone = options.zone ?? -now.getTimezoneOffset();
  /** The scripts being run, outermost first (an include of one of them is a loop), and those included. */
  const running: string[] = [''];
  const included = new Set<string>();
  const maxDepth = options.maxIncludeDepth ?? 10;

  const step = () => {
    if (--steps < 0) throw new SieveRuntimeError('the script ran too long');
  };
  const add = (a: Action) => {
    if (actions.length >= maxActions) throw new SieveRuntimeError(`more than ${maxActions} actions`);
    if (a.type === 'redirect' && actions.filter((x) => x.type === 'redirect').length >= maxRedirects)
      throw new SieveRuntimeError(`more than ${maxRedirects} redirects`);
    // §4.1, §4.2: the same fileinto or redirect twice is done once.
    if (
      actions.some(
        (x) =>
          (x.type === 'fileinto' && a.type === 'fileinto' && x.mailbox === a.mailbox) ||
          (x.type === 'redirect' &&
            a.type === 'redirect' &&
            x.address.toLowerCase() === a.address.toLowerCase()),
      )
    )
      return;
    actions.push(a);
  };

  /** Compares one value with the keys under the test's match type and comparator. */
  const matcher = (tags: Map<string, Argument | null>) => {
    const comparator = (strings(tags.get('comparator'))[0] ?? 'i;ascii-casemap').toLowerCase();
    const fold =
      comparator === 'i;ascii-casemap'
        ? (s: string) => s.replace(/[A-Z]/g, (c) => c.toLowerCase())
        : (s: string) => s;
    const numeric = comparator === 'i;ascii-numeric';
    const num = (s: string) => {
      const m = /^\d+/.exec(s);
      return m ? Number(m[0]) : Number.POSITIVE_INFINITY;
    };
    const compare = (a: string, b: string) =>
      numeric ? Math.sign(num(a) - num(b)) : fold(a) < fold(b) ? -1 : fold(a) > fold(b) ? 1 : 0;
    if (tags.has('regex')) throw new SieveRuntimeError(':regex is not supported yet');
    const value = tags.get('value');
    const count = tags.get('count');
    return (values: string[], keys: string[]): boolean => {
      if (count) {
        const rel = RELATIONS[strings(count)[0]!.toLowerCase()]!;
        return keys.some((k) => rel(compare(String(values.length), k)));
      }
      if (value) {
        const rel = RELATIONS[strings(value)[0]!.toLowerCase()]!;
        return values.some((v) => keys.some((k) => rel(compare(v, k))));
      }
      if (tags.has('contains')) return values.some((v) => keys.some((k) => fold(v).includes(fold(k))));
      if (tags.has('matches')) return values.some((v) => keys.some((k) => wildcardMatch(fold(v), fold(k))));
      return values.some((v) => keys.some((k) => compare(v, k) === 0));
    };
  };

  /** The part of an address the test asks for (§2.7.4, RFC 5233 for :user and :detail). */
  const part = (tags: Map<string, Argument | null>, address: string): string | null => {
    const at = address.lastIndexOf('@');
    const local = at < 0 ? address : address.slice(0, at);
    const domain = at < 0 ? '' : address.slice(at + 1);
    if (tags.has('localpart')) return local;
    if (tags.has('domain')) return domain;
    const plus = local.indexOf('+');
    if (tags.has('user')) return plus < 0 ? local : local.slice(0, plus);
    if (tags.has('detail')) return plus < 0 ? null : local.slice(plus + 1);
    return address;
  };

  /** The values of a header field's occurrences, or only the one :index (and :last) picks (RFC 5260 §6). */
  const occurrences = (tags: Map<string, Argument | null>, name: string): string[] => {
    const all = message.header(name);
    const index = tags.get('index') as Extract<Argument, { kind: 'number' }> | null | undefined;
    if (!index) return all;
    const i = tags.has('last') ? all.length - index.value : index.value - 1;
    return i >= 0 && i < all.length ? [all[i]!] : [];
  };

  const test = (t: Test): boolean => {
    step();
    const { tags, rest } = split(t.args);
    switch (t.name) {
      case 'true':
        return true;
      case 'false':
        return false;
      case 'not':
        return !test(t.tests[0]!);
      case 'allof':
        return t.tests.every(test);
      case 'anyof':
        return t.tests.some(test);
      case 'exists':
        return strings(rest[0]).every((h) => message.header(h).length > 0);
      case 'size': {
        const limit = (rest[0] as Extract<Argument, { kind: 'number' }>).value;
        return tags.has('over') ? message.size > limit : message.size < limit;
      }
      case 'header': {
        const values = strings(rest[0]).flatMap((h) => occurrences(tags, h));
        return matcher(tags)(values, strings(rest[1]));
      }
      case 'address': {
        const values: string[] = [];
        for (const h of strings(rest[0]))
          for (const v of occurrences(tags, h))
            for (const e of parseAddressList(v))
              for (const a of 'group' in e ? e.group : [e]) {
                const p = part(tags, a.address);
                if (p !== null) values.push(p);
              }
        return matcher(tags)(values, strings(rest[1]));
      }
      case 'envelope': {
        const values: string[] = [];
        for (const which of strings(rest[0])) {
          const a =
            which.toLowerCase() === 'from'
              ? envelope.from
              : which.toLowerCase() === 'to'
                ? envelope.to
                : null;
          if (a === null) continue;
          const p = a === '' ? '' : part(tags, a);
          if (p !== null) values.push(p);
        }
        return matcher(tags)(values, strings(rest[1]));
      }
      case 'date': {
        // RFC 5260 §4: a field that is absent or not a date makes the test false.
        const part = strings(rest[1])[0]!.toLowerCase();
        const zone = strings(tags.get('zone'))[0];
        const values: string[] = [];
        const field = strings(rest[0])[0]!;
        for (const v of occurrences(tags, field)) {
          // A Received: field's date is after its last semicolon (RFC 5260 §4, RFC 5321 §4.4).
          const d = parseHeaderDate(field.toLowerCase() === 'received' ? v.slice(v.lastIndexOf(';') + 1) : v);
          if (!d) continue;
          // :originalzone: as written; :zone: in that zone; neither: in the local zone (§4.1).
          const z = tags.has('originalzone') ? d.zone : zone !== undefined ? zoneOf(zone) : localZone;
          values.push(datePart(d.time, z, part));
        }
        return values.length > 0 && matcher(tags)(values, strings(rest[2]));
      }
      case 'currentdate': {
        const zone = strings(tags.get('zone'))[0];
        const value = datePart(
          now.getTime(),
          zone !== undefined ? zoneOf(zone) : localZone,
          strings(rest[0])[0]!.toLowerCase(),
        );
        return matcher(tags)([value], strings(rest[1]));
      }
      default:
        throw new SieveRuntimeError(`the test "${t.name}" is not supported yet`);
    }
  };

  const block = (commands: Command[]): void => {
    let skipElse = false;
    for (const c of commands) {
      if (stopped || returned) return;
      step();
      const { tags, rest } = split(c.args);
      const withFlags = () => {
        const f = tags.has('flags') ? strings(tags.get('flags')) : flags;
        return f.length ? { flags: [...f] } : {};
      };
      switch (c.name) {
        case 'require':
          break;
        case 'if':
          skipElse = test(c.tests[0]!);
          if (skipElse) block(c.block!);
          break;
        case 'elsif':
          if (!skipElse) {
            skipElse = test(c.tests[0]!);
            if (skipElse) block(c.block!);
          }
          break;
        case 'else':
          if (!skipElse) block(c.block!);
          break;
        case 'stop':
          stopped = true;
          return;
        case 'return':
          // In the main script, return is stop (RFC 6609 §3.3).
          if (running.length === 1) stopped = true;
          else returned = true;
          return;
        case 'include': {
          const name = strings(rest[0])[0]!;
          if (tags.has('once') && included.has(name)) break;
          if (running.includes(name)) throw new SieveRuntimeError(`include "${name}": a loop`);
          if (running.length > maxDepth)
            throw new SieveRuntimeError(`includes nested deeper than ${maxDepth}`);
          const script = tags.has('global') ? null : (options.include?.(name) ?? null);
          if (!script) {
            // RFC 6609 §3.2: a missing script is a run-time error unless :optional.
            if (tags.has('optional')) break;
            throw new SieveRuntimeError(`include: no script "${name}"`);
          }
          included.add(name);
          running.push(name);
          block(script);
          running.pop();
          returned = false;
          break;
        }
        case 'keep':
          add({ type: 'keep', ...withFlags() });
          cancelled = true;
          break;
        case 'discard':
          cancelled = true;
          break;
        case 'fileinto':
          add({
            type: 'fileinto',
            mailbox: strings(rest[0])[0]!,
            copy: tags.has('copy'),
            create: tags.has('create'),
            ...withFlags(),
          });
          if (!tags.has('copy')) cancelled = true;
          break;
        case 'redirect':
          add({ type: 'redirect', address: strings(rest[0])[0]!, copy: tags.has('copy') });
          if (!tags.has('copy')) cancelled = true;
          break;
        case 'reject':
        case 'ereject':
          add({ type: 'reject', reason: strings(rest[0])[0]!, ereject: c.name === 'ereject' });
          cancelled = true;
          break;
        case 'vacation': {
          // §4.7 (and RFC 5429 §2.2): a reply besides a refusal makes no sense; one reply per run.
          if (actions.some((a) => a.type === 'vacation')) throw new SieveRuntimeError('vacation used twice');
          const period = options.vacationPeriod ?? { min: DAY, max: 60 * DAY };
          const num = (tag: string) => (tags.get(tag) as Extract<Argument, { kind: 'number' }> | null)?.value;
          const asked = num('seconds') ?? (num('days') ?? 7) * DAY;
          const reason = strings(rest[0])[0]!;
          const subject = strings(tags.get('subject'))[0];
          const from = strings(tags.get('from'))[0];
          add({
            type: 'vacation',
            reason,
            ...(subject !== undefined ? { subject } : {}),
            ...(from !== undefined ? { from } : {}),
            addresses: strings(tags.get('addresses')),
            mime: tags.has('mime'),
            // §4.2: without :handle, replies with different arguments are different replies.
            handle:
              strings(tags.get('handle'))[0] ??
              JSON.stringify([reason, subject ?? '', from ?? '', tags.has('mime')]),
            seconds: Math.min(Math.max(asked, period.min), period.max),
          });
          break;
        }
        case 'setflag':
          flags = [...new Set(strings(rest[0]).flatMap((f) => f.split(' ').filter(Boolean)))];
          break;
        case 'addflag':
          flags = [...new Set([...flags, ...strings(rest[0]).flatMap((f) => f.split(' ').filter(Boolean))])];
          break;
        case 'removeflag': {
          const gone = new Set(
            strings(rest[0])
              .flatMap((f) => f.split(' ').filter(Boolean))
              .map((f) => f.toLowerCase()),
          );
          flags = flags.filter((f) => !gone.has(f.toLowerCase()));
          break;
        }
        default:
          throw new SieveRuntimeError(`the command "${c.name}" is not supported yet`);
      }
      if (c.name !== 'if' && c.name !== 'elsif' && c.name !== 'else') skipElse = false;
    }
  };

  block(script);
  // §2.10.2: the implicit keep, unless an action cancelled it.
  if (!cancelled) actions.unshift({ type: 'keep', ...(flags.length ? { flags } : {}) });
  // A reject alongside a keep or fileinto would both refuse and deliver (RFC 5429 §2.2): an error, so the
  // message is kept and nothing is refused.
  if (
    actions.some((a) => a.type === 'reject') &&
    actions.some((a) => a.type === 'keep' || a.type === 'fileinto' || a.type === 'vacation')
  )
    throw new SieveRuntimeError('reject together with keep, fileinto or vacation');
  return actions;
}
