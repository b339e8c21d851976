/**
 * Running a compiled script (RFC 5228 §2.10, §4, §5) on one message: pure and synchronous, no I/O; the
 * result is the list of actions the MDA then carries out. The core commands and tests and the extensions
 * fileinto, reject/ereject, envelope, copy, imap4flags, subaddress, relational, vacation (and
 * vacation-seconds), variables, encoded-character, regex, body, date and index, include, environment,
 * spamtest/spamtestplus, mailbox and duplicate; what the caller does not provide (a body, the duplicate
 * memory) and anything else is a SieveRuntimeError, and the caller keeps the message (a script never
 * loses mail).
 *
 * Bounded: `:matches` is a two-pointer wildcard match and `:regex` runs on RE2's linear-time engine (never
 * exponential), variables are cut at MAX_VARIABLE characters, at most `maxActions` actions and
 * `maxRedirects` redirects (§10), at most `maxSteps` tests and commands, and `maxMs` of wall-clock time.
 */
import { flatAddresses, parseAddressList, parseHeaderDate } from '@mailwerk/mime';
import { datePart, zoneOf } from './date.ts';
import { SieveRuntimeError } from './errors.ts';
import {
  applyModifiers,
  decodeEncodedCharacters,
  expandVariables,
  MAX_VARIABLE,
  MAX_VARIABLES,
} from './expand.ts';
import { regexCaptures, wildcardCaptures } from './match.ts';
import type { Argument, Command, Test } from './parser.ts';
import { TAGS_WITH_ARGUMENT } from './validate.ts';

export { SieveRuntimeError };

/** What the body test looks at (RFC 5173 §5): the raw body, the text parts, or the parts of some types. */
export type BodyTransform = { kind: 'raw' } | { kind: 'text' } | { kind: 'content'; types: string[] };

export interface SieveMessage {
  /** The decoded values of a header field (RFC 2047 words decoded by the caller), in order; [] when absent. */
  header(name: string): string[];
  /** The message's size in octets. */
  size: number;
  /** The body as the body test sees it (RFC 5173); without it, a body test is a run-time error. */
  body?(transform: BodyTransform): string[];
  /** Every header field in order, name lower-cased, value decoded: what editheader (RFC 5293) edits. */
  fields?(): Array<{ name: string; value: string }>;
}

/**
 * The header changes of editheader (RFC 5293), for the message every later action gets: occurrences of
 * the original fields to delete (1-based, per name), and fields to add on top and at the end.
 */
export interface HeaderEdits {
  type: 'editheader';
  deleted: Array<{ name: string; occurrence: number }>;
  top: Array<{ name: string; value: string }>;
  bottom: Array<{ name: string; value: string }>;
}

/** Fields a script may neither add nor delete (RFC 5293 §6: trace and loop-prevention fields). */
const PROTECTED_FIELDS = new Set(['received', 'auto-submitted']);

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
  | Vacation
  | HeaderEdits;

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
  /** The environment test's items (RFC 5183 §4: domain, host, location, name, phase, version, …). */
  environment?: Record<string, string>;
  /** The spam scanner's score and threshold (spamtest, RFC 5235), or null when the message was not scanned. */
  spam?: { score: number; required: number } | null;
  /** Whether the user has a mailbox of that name (mailboxexists, RFC 5490 §3.1). */
  mailboxExists?: (name: string) => boolean;
  /**
   * The duplicate test (RFC 7352): whether this id was seen for the user within `seconds` (and, by the
   * caller, remembered now). Without it, a duplicate test is a run-time error.
   */
  duplicate?: (id: string, seconds: number) => boolean;
  /** Wall-clock time a run may take (default 200 ms), besides the step bound. */
  maxMs?: number;
}

/** One script being run: what it requires, its variables (RFC 5229), and the names it shares (RFC 6609 global). */
interface Scope {
  name: string;
  required: Set<string>;
  vars: Map<string, string>;
  globals: Set<string>;
}

/** The extensions a script requires (its top-level require commands). */
function requiredOf(commands: Command[]): Set<string> {
  const out = new Set<string>();
  for (const c of commands) {
    if (c.name !== 'require') break;
    for (const v of strings(c.args[0])) out.add(v.toLowerCase());
  }
  if (out.has('vacation-seconds')) out.add('vacation');
  if (out.has('spamtestplus')) out.add('spamtest');
  return out;
}

const DAY = 86_400;

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

  const started = Date.now();
  const maxMs = options.maxMs ?? 200;
  const step = () => {
    if (--steps < 0) throw new SieveRuntimeError('the script ran too long');
    if (steps % 256 === 0 && Date.now() - started > maxMs)
      throw new SieveRuntimeError(`the script ran longer than ${maxMs} ms`);
  };
  /** Global variables (RFC 6609 §3.4), and the scripts being run, innermost last. */
  const globalVars = new Map<string, string>();
  const scopes: Scope[] = [{ name: '', required: requiredOf(script), vars: new Map(), globals: new Set() }];
  const scope = () => scopes[scopes.length - 1]!;
  /**
   * The header as edited so far (RFC 5293), made on the first edit: each field with its occurrence among
   * the original fields of its name, or null for one the script added.
   */
  type Field = { name: string; value: string; occurrence: number | null; last: boolean };
  let view: Field[] | null = null;
  const finalView = (): Field[] | null => view;
  const original: Array<{ name: string; occurrence: number }> = [];
  const edited = () => {
    if (view) return view;
    if (!message.fields) throw new SieveRuntimeError('editheader is not available here');
    const count = new Map<string, number>();
    view = message.fields().map((f) => {
      const n = (count.get(f.name) ?? 0) + 1;
      count.set(f.name, n);
      original.push({ name: f.name, occurrence: n });
      return { name: f.name, value: f.value, occurrence: n, last: false };
    });
    return view;
  };
  const headerValues = (name: string): string[] => {
    if (!view) return message.header(name);
    const key = name.toLowerCase();
    return view.filter((f) => f.name.toLowerCase() === key).map((f) => f.value);
  };
  /** ${0}…${9} of the last successful :matches or :regex (RFC 5229 §3.2). */
  let matchVars: string[] = [];
  const lookup = (name: string): string => {
    if (/^\d+$/.test(name)) return matchVars[Number(name)] ?? '';
    const key = name.toLowerCase();
    const sc = scope();
    if (sc.globals.has(key) || key.startsWith('global.'))
      return globalVars.get(key.replace(/^global\./, '')) ?? '';
    return sc.vars.get(key) ?? '';
  };
  const setVar = (name: string, value: string) => {
    const key = name.toLowerCase();
    const sc = scope();
    const global = sc.globals.has(key) || key.startsWith('global.');
    const map = global ? globalVars : sc.vars;
    const k = global ? key.replace(/^global\./, '') : key;
    if (!map.has(k) && map.size >= MAX_VARIABLES)
      throw new SieveRuntimeError(`more than ${MAX_VARIABLES} variables`);
    map.set(k, value.length > MAX_VARIABLE ? value.slice(0, MAX_VARIABLE) : value);
  };
  /** A string as the script means it: encoded characters and variables expanded where required. */
  const expand = (v: string): string => {
    const req = scope().required;
    let out = req.has('encoded-character') ? decodeEncodedCharacters(v) : v;
    if (req.has('variables')) out = expandVariables(out, lookup);
    return out;
  };
  const str = (a: Argument | null | undefined): string[] =>
    a?.kind === 'strings' ? (a as Strings).values.map(expand) : [];
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
  const matcher = (tags: Map<string, Argument | null>, defaultComparator = 'i;ascii-casemap') => {
    const comparator = (str(tags.get('comparator'))[0] ?? defaultComparator).toLowerCase();
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
    const value = tags.get('value');
    const count = tags.get('count');
    return (values: string[], keys: string[]): boolean => {
      if (count) {
        const rel = RELATIONS[str(count)[0]!.toLowerCase()]!;
        return keys.some((k) => rel(compare(String(values.length), k)));
      }
      if (value) {
        const rel = RELATIONS[str(value)[0]!.toLowerCase()]!;
        return values.some((v) => keys.some((k) => rel(compare(v, k))));
      }
      if (tags.has('contains')) return values.some((v) => keys.some((k) => fold(v).includes(fold(k))));
      if (tags.has('matches') || tags.has('regex')) {
        for (const v of values)
          for (const k of keys) {
            const caught = tags.has('regex')
              ? regexCaptures(v, k, comparator === 'i;ascii-casemap')
              : wildcardCaptures(v, fold(k), fold(v));
            if (caught) {
              // RFC 5229 §3.2: the match variables of the successful match.
              matchVars = caught;
              return true;
            }
          }
        return false;
      }
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
    const all = headerValues(name);
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
        return str(rest[0]).every((h) => headerValues(h).length > 0);
      case 'size': {
        const limit = (rest[0] as Extract<Argument, { kind: 'number' }>).value;
        return tags.has('over') ? message.size > limit : message.size < limit;
      }
      case 'header': {
        const values = str(rest[0]).flatMap((h) => occurrences(tags, h));
        return matcher(tags)(values, str(rest[1]));
      }
      case 'address': {
        const values = str(rest[0])
          .flatMap((h) => occurrences(tags, h))
          .flatMap((v) => flatAddresses(parseAddressList(v)))
          .map((a) => part(tags, a))
          .filter((p): p is string => p !== null);
        return matcher(tags)(values, str(rest[1]));
      }
      case 'envelope': {
        const values: string[] = [];
        for (const which of str(rest[0])) {
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
        return matcher(tags)(values, str(rest[1]));
      }
      case 'date': {
        // RFC 5260 §4: a field that is absent or not a date makes the test false.
        const part = str(rest[1])[0]!.toLowerCase();
        const zone = str(tags.get('zone'))[0];
        const values: string[] = [];
        const field = str(rest[0])[0]!;
        for (const v of occurrences(tags, field)) {
          // A Received: field's date is after its last semicolon (RFC 5260 §4, RFC 5321 §4.4).
          const d = parseHeaderDate(field.toLowerCase() === 'received' ? v.slice(v.lastIndexOf(';') + 1) : v);
          if (!d) continue;
          // :originalzone: as written; :zone: in that zone; neither: in the local zone (§4.1).
          const z = tags.has('originalzone') ? d.zone : zone !== undefined ? zoneOf(zone) : localZone;
          values.push(datePart(d.time, z, part));
        }
        return values.length > 0 && matcher(tags)(values, str(rest[2]));
      }
      case 'currentdate': {
        const zone = str(tags.get('zone'))[0];
        const value = datePart(
          now.getTime(),
          zone !== undefined ? zoneOf(zone) : localZone,
          str(rest[0])[0]!.toLowerCase(),
        );
        return matcher(tags)([value], str(rest[1]));
      }
      case 'body': {
        if (!message.body) throw new SieveRuntimeError('the body test is not available here');
        const transform: BodyTransform = tags.has('raw')
          ? { kind: 'raw' }
          : tags.has('content')
            ? { kind: 'content', types: str(tags.get('content')) }
            : { kind: 'text' };
        return matcher(tags)(message.body(transform), str(rest[0]));
      }
      case 'string':
        // RFC 5229 §5; :count counts the source strings that are not empty.
        return matcher(tags)(
          tags.has('count') ? str(rest[0]).filter((v) => v !== '') : str(rest[0]),
          str(rest[1]),
        );
      case 'environment': {
        const item = options.environment?.[str(rest[0])[0]!.toLowerCase()];
        return item !== undefined && matcher(tags)([item], str(rest[1]));
      }
      case 'spamtest': {
        // RFC 5235 §3: "0" not scanned; 1 (surely not spam) to 10 (surely spam); :percent 0-100.
        const spam = options.spam;
        const ratio = spam ? spam.score / (spam.required > 0 ? spam.required : 1) : 0;
        const value = tags.has('percent')
          ? String(spam ? Math.min(100, Math.max(0, Math.round(ratio * 100))) : 0)
          : String(spam ? Math.min(10, Math.max(1, 1 + Math.round(ratio * 8))) : 0);
        return matcher(tags, 'i;ascii-numeric')([value], str(rest[0]));
      }
      case 'mailboxexists':
        if (!options.mailboxExists) throw new SieveRuntimeError('mailboxexists is not available here');
        return str(rest[0]).every((m) => options.mailboxExists!(m));
      case 'duplicate': {
        if (!options.duplicate) throw new SieveRuntimeError('the duplicate test is not available here');
        // RFC 7352 §3: the Message-ID by default, else the field :header names or :uniqueid; per :handle.
        const id = tags.has('uniqueid')
          ? str(tags.get('uniqueid'))[0]!
          : headerValues(tags.has('header') ? str(tags.get('header'))[0]! : 'message-id')[0]?.trim();
        if (!id) return false;
        const seconds =
          (tags.get('seconds') as Extract<Argument, { kind: 'number' }> | null)?.value ?? 7 * DAY;
        return options.duplicate(`${str(tags.get('handle'))[0] ?? ''}\0${id}`, Math.min(seconds, 60 * DAY));
      }
      case 'hasflag':
        return matcher(tags)(
          flags,
          str(rest[0]).flatMap((f) => f.split(' ').filter(Boolean)),
        );
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
        const f = tags.has('flags') ? str(tags.get('flags')) : flags;
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
          const name = str(rest[0])[0]!;
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
          scopes.push({ name, required: requiredOf(script), vars: new Map(), globals: new Set() });
          block(script);
          scopes.pop();
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
            mailbox: str(rest[0])[0]!,
            copy: tags.has('copy'),
            create: tags.has('create'),
            ...withFlags(),
          });
          if (!tags.has('copy')) cancelled = true;
          break;
        case 'redirect':
          add({ type: 'redirect', address: str(rest[0])[0]!, copy: tags.has('copy') });
          if (!tags.has('copy')) cancelled = true;
          break;
        case 'reject':
        case 'ereject':
          add({ type: 'reject', reason: str(rest[0])[0]!, ereject: c.name === 'ereject' });
          cancelled = true;
          break;
        case 'vacation': {
          // §4.7 (and RFC 5429 §2.2): a reply besides a refusal makes no sense; one reply per run.
          if (actions.some((a) => a.type === 'vacation')) throw new SieveRuntimeError('vacation used twice');
          const period = options.vacationPeriod ?? { min: DAY, max: 60 * DAY };
          const num = (tag: string) => (tags.get(tag) as Extract<Argument, { kind: 'number' }> | null)?.value;
          const asked = num('seconds') ?? (num('days') ?? 7) * DAY;
          const reason = str(rest[0])[0]!;
          const subject = str(tags.get('subject'))[0];
          const from = str(tags.get('from'))[0];
          add({
            type: 'vacation',
            reason,
            ...(subject !== undefined ? { subject } : {}),
            ...(from !== undefined ? { from } : {}),
            addresses: str(tags.get('addresses')),
            mime: tags.has('mime'),
            // §4.2: without :handle, replies with different arguments are different replies.
            handle:
              str(tags.get('handle'))[0] ??
              JSON.stringify([reason, subject ?? '', from ?? '', tags.has('mime')]),
            seconds: Math.min(Math.max(asked, period.min), period.max),
          });
          break;
        }
        case 'set': {
          const mods = new Set([...tags.keys()]);
          setVar(str(rest[0])[0]!, applyModifiers(str(rest[1])[0]!, mods));
          break;
        }
        case 'global':
          // RFC 6609 §3.4: these names are shared with every script of this run.
          for (const name of str(rest[0])) scope().globals.add(name.toLowerCase());
          break;
        case 'addheader': {
          const name = str(rest[0])[0]!;
          if (!/^[!-9;-~]{1,100}$/.test(name))
            throw new SieveRuntimeError(`addheader: "${name}" is not a field name`);
          if (PROTECTED_FIELDS.has(name.toLowerCase()))
            throw new SieveRuntimeError(`addheader: ${name} is protected`);
          const value = str(rest[1])[0]!
            .replace(/[\r\n]+/g, ' ')
            .slice(0, 998);
          const v = edited();
          const field = { name, value, occurrence: null, last: tags.has('last') };
          if (tags.has('last')) v.push(field);
          else v.unshift(field);
          if (v.length > 10_000) throw new SieveRuntimeError('addheader: too many fields');
          break;
        }
        case 'deleteheader': {
          const name = str(rest[0])[0]!.toLowerCase();
          if (PROTECTED_FIELDS.has(name)) throw new SieveRuntimeError(`deleteheader: ${name} is protected`);
          const v = edited();
          const mine = v.filter((f) => f.name.toLowerCase() === name);
          const index = tags.get('index') as Extract<Argument, { kind: 'number' }> | null | undefined;
          const picked = index
            ? [mine[tags.has('last') ? mine.length - index.value : index.value - 1]].filter(
                (f) => f !== undefined,
              )
            : mine;
          const patterns = rest[1] ? str(rest[1]) : null;
          const match = matcher(tags);
          const gone = new Set(picked.filter((f) => !patterns || match([f.value], patterns)));
          view = v.filter((f) => !gone.has(f));
          break;
        }
        case 'setflag':
          flags = [...new Set(str(rest[0]).flatMap((f) => f.split(' ').filter(Boolean)))];
          break;
        case 'addflag':
          flags = [...new Set([...flags, ...str(rest[0]).flatMap((f) => f.split(' ').filter(Boolean))])];
          break;
        case 'removeflag': {
          const gone = new Set(
            str(rest[0])
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
  const final = finalView();
  if (final) {
    const kept = new Set(final.filter((f) => f.occurrence !== null).map((f) => `${f.name}\0${f.occurrence}`));
    const added = final.filter((f) => f.occurrence === null);
    actions.push({
      type: 'editheader',
      deleted: original.filter((o) => !kept.has(`${o.name}\0${o.occurrence}`)),
      top: added.filter((f) => !f.last).map(({ name, value }) => ({ name, value })),
      bottom: added.filter((f) => f.last).map(({ name, value }) => ({ name, value })),
    });
  }
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
