/**
 * What a parsed script may say (RFC 5228 §3-5 and the extensions below): each command and test with its
 * tags and positional arguments, the extension that must be `require`d for it, `require` only at the
 * start, elsif/else only after if, one match type, comparator and address part each. Errors name the
 * line and column of what is wrong.
 */
import { SieveError } from './errors.ts';
import { regexProblem } from './match.ts';
import { type Argument, type Command, type ParseOptions, parse, type Test } from './parser.ts';

type Kind = 'string' | 'strings' | 'number';

interface TagSpec {
  /** The extension that provides it. */
  ext?: string;
  /** Its own argument. */
  arg?: Kind;
  /** Tags of one group exclude each other. */
  group?:
    | 'match'
    | 'comparator'
    | 'address-part'
    | 'body-transform'
    | 'index'
    | 'case'
    | 'period'
    | 'location'
    | 'zone'
    | 'quote'
    | 'id'
    | 'first';
}

interface Spec {
  ext?: string;
  tags?: Record<string, TagSpec>;
  positional: Kind[];
  /** How many tests it takes. */
  tests?: 'one' | 'list';
  block?: 'required' | 'none';
  /** How many of the last positional arguments may be left out. */
  optional?: number;
}

/** The extensions a script may `require` (and ManageSieve's SIEVE capability lists). */
export const EXTENSIONS = [
  'body',
  'comparator-i;ascii-numeric',
  'copy',
  'date',
  'duplicate',
  'encoded-character',
  'envelope',
  'editheader',
  'environment',
  'ereject',
  'fileinto',
  'imap4flags',
  'include',
  'index',
  'mailbox',
  'regex',
  'reject',
  'relational',
  'spamtest',
  'spamtestplus',
  'subaddress',
  'vacation',
  'vacation-seconds',
  'variables',
] as const;

const MATCH: Record<string, TagSpec> = {
  is: { group: 'match' },
  contains: { group: 'match' },
  matches: { group: 'match' },
  regex: { group: 'match', ext: 'regex' },
  count: { group: 'match', ext: 'relational', arg: 'string' },
  value: { group: 'match', ext: 'relational', arg: 'string' },
  comparator: { group: 'comparator', arg: 'string' },
};
const ADDRESS_PART: Record<string, TagSpec> = {
  all: { group: 'address-part' },
  localpart: { group: 'address-part' },
  domain: { group: 'address-part' },
  user: { group: 'address-part', ext: 'subaddress' },
  detail: { group: 'address-part', ext: 'subaddress' },
};
const FLAGS: Record<string, TagSpec> = { flags: { ext: 'imap4flags', arg: 'strings' } };
/** RFC 5260 §6: which occurrence of a header field a test looks at. */
const INDEX: Record<string, TagSpec> = {
  index: { ext: 'index', arg: 'number' },
  last: { ext: 'index' },
};

const COMMANDS: Record<string, Spec> = {
  require: { positional: ['strings'] },
  if: { positional: [], tests: 'one', block: 'required' },
  elsif: { positional: [], tests: 'one', block: 'required' },
  else: { positional: [], block: 'required' },
  stop: { positional: [] },
  keep: { positional: [], tags: FLAGS },
  discard: { positional: [] },
  redirect: { positional: ['string'], tags: { copy: { ext: 'copy' } } },
  fileinto: {
    ext: 'fileinto',
    positional: ['string'],
    tags: { copy: { ext: 'copy' }, create: { ext: 'mailbox' }, ...FLAGS },
  },
  reject: { ext: 'reject', positional: ['string'] },
  ereject: { ext: 'ereject', positional: ['string'] },
  setflag: { ext: 'imap4flags', positional: ['strings'] },
  addflag: { ext: 'imap4flags', positional: ['strings'] },
  removeflag: { ext: 'imap4flags', positional: ['strings'] },
  set: {
    ext: 'variables',
    positional: ['string', 'string'],
    tags: {
      lower: { group: 'case' },
      upper: { group: 'case' },
      lowerfirst: { group: 'first' },
      upperfirst: { group: 'first' },
      quotewildcard: { group: 'quote' },
      quoteregex: { group: 'quote', ext: 'regex' },
      length: {},
    },
  },
  include: {
    ext: 'include',
    positional: ['string'],
    tags: { personal: { group: 'location' }, global: { group: 'location' }, once: {}, optional: {} },
  },
  return: { ext: 'include', positional: [] },
  addheader: { ext: 'editheader', positional: ['string', 'string'], tags: { last: {} } },
  deleteheader: {
    ext: 'editheader',
    positional: ['string', 'strings'],
    optional: 1,
    tags: { ...MATCH, ...INDEX },
  },
  global: { ext: 'include', positional: ['strings'] },
  vacation: {
    ext: 'vacation',
    positional: ['string'],
    tags: {
      days: { group: 'period', arg: 'number' },
      subject: { arg: 'string' },
      from: { arg: 'string' },
      addresses: { arg: 'strings' },
      seconds: { group: 'period', ext: 'vacation-seconds', arg: 'number' },
      mime: {},
      handle: { arg: 'string' },
    },
  },
};

const TESTS: Record<string, Spec> = {
  address: { positional: ['strings', 'strings'], tags: { ...MATCH, ...ADDRESS_PART, ...INDEX } },
  envelope: { ext: 'envelope', positional: ['strings', 'strings'], tags: { ...MATCH, ...ADDRESS_PART } },
  header: { positional: ['strings', 'strings'], tags: { ...MATCH, ...INDEX } },
  date: {
    ext: 'date',
    positional: ['string', 'string', 'strings'],
    tags: { ...MATCH, ...INDEX, zone: { group: 'zone', arg: 'string' }, originalzone: { group: 'zone' } },
  },
  currentdate: {
    ext: 'date',
    positional: ['string', 'strings'],
    tags: { ...MATCH, zone: { arg: 'string' } },
  },
  exists: { positional: ['strings'] },
  size: { positional: ['number'], tags: { over: { group: 'match' }, under: { group: 'match' } } },
  allof: { positional: [], tests: 'list' },
  anyof: { positional: [], tests: 'list' },
  not: { positional: [], tests: 'one' },
  true: { positional: [] },
  false: { positional: [] },
  body: {
    ext: 'body',
    positional: ['strings'],
    tags: {
      ...MATCH,
      raw: { group: 'body-transform' },
      content: { group: 'body-transform', arg: 'strings' },
      text: { group: 'body-transform' },
    },
  },
  hasflag: { ext: 'imap4flags', positional: ['strings'], tags: MATCH },
  string: { ext: 'variables', positional: ['strings', 'strings'], tags: MATCH },
  mailboxexists: { ext: 'mailbox', positional: ['strings'] },
  environment: { ext: 'environment', positional: ['string', 'strings'], tags: MATCH },
  spamtest: { ext: 'spamtest', positional: ['string'], tags: { ...MATCH, percent: { ext: 'spamtestplus' } } },
  duplicate: {
    ext: 'duplicate',
    positional: [],
    tags: {
      handle: { arg: 'string' },
      header: { group: 'id', arg: 'string' },
      uniqueid: { group: 'id', arg: 'string' },
      seconds: { arg: 'number' },
      last: {},
    },
  },
};

/** The largest script taken (ManageSieve's QUOTA/MAXSIZE, `mailwerk sieve put`), in octets. */
export const MAX_SCRIPT_SIZE = 256 * 1024;

/** RFC 5260 §4.2. */
export const DATE_PARTS: ReadonlySet<string> = new Set([
  'year',
  'month',
  'day',
  'date',
  'julian',
  'hour',
  'minute',
  'second',
  'time',
  'iso8601',
  'std11',
  'zone',
  'weekday',
]);

/** The tags that take an argument of their own (`:comparator "…"`), by name, from the tables above. */
export const TAGS_WITH_ARGUMENT: ReadonlySet<string> = new Set(
  [...Object.values(COMMANDS), ...Object.values(TESTS)].flatMap((spec) =>
    Object.entries(spec.tags ?? {})
      .filter(([, tag]) => tag.arg)
      .map(([name]) => name),
  ),
);

/** Why `name` cannot name a script (RFC 5804 §1.6: UTF-8 without controls; at most 128 octets), or null. */
export function scriptNameProblem(name: string): string | null {
  if (name === '') return 'a script name cannot be empty';
  if (Buffer.byteLength(name) > 128) return 'a script name is at most 128 octets';
  if (/[\x00-\x1f\x7f\u0080-\u009f\u2028\u2029]/.test(name))
    return 'a script name cannot hold control characters';
  return null;
}

const COMPARATORS = new Set(['i;octet', 'i;ascii-casemap']);
const RELATIONS = new Set(['gt', 'ge', 'lt', 'le', 'eq', 'ne']);

const fail = (message: string, at: { line: number; column: number }): never => {
  throw new SieveError(message, at.line, at.column);
};

function checkArgs(
  what: string,
  spec: Spec,
  args: Argument[],
  required: Set<string>,
  at: { line: number; column: number },
): void {
  const groups = new Map<string, string>();
  const seen = new Set<string>();
  const positional: Argument[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a.kind !== 'tag') {
      positional.push(a);
      continue;
    }
    if (positional.length > 0) fail(`${what}: the tag :${a.name} must come before the other arguments`, a);
    const tag = spec.tags?.[a.name];
    if (!tag) fail(`${what}: unknown tag :${a.name}`, a);
    if (tag!.ext && !required.has(tag!.ext)) fail(`${what}: :${a.name} needs require "${tag!.ext}"`, a);
    if (seen.has(a.name)) fail(`${what}: :${a.name} given twice`, a);
    seen.add(a.name);
    if (tag!.group) {
      const other = groups.get(tag!.group);
      if (other) fail(`${what}: :${a.name} and :${other} cannot be used together`, a);
      groups.set(tag!.group, a.name);
    }
    if (tag!.arg) {
      const v = args[++i];
      if (!v || !fits(v, tag!.arg)) fail(`${what}: :${a.name} needs ${label(tag!.arg)} after it`, v ?? a);
      if (a.name === 'comparator' && v!.kind === 'strings') {
        const c = v!.values[0]!.toLowerCase();
        if (c === 'i;ascii-numeric' && !required.has('comparator-i;ascii-numeric'))
          fail(`${what}: the comparator i;ascii-numeric needs require "comparator-i;ascii-numeric"`, v!);
        else if (c !== 'i;ascii-numeric' && !COMPARATORS.has(c))
          fail(`${what}: unknown comparator "${c}"`, v!);
      }
      if (
        (a.name === 'count' || a.name === 'value') &&
        v!.kind === 'strings' &&
        !RELATIONS.has(v!.values[0]!.toLowerCase())
      )
        fail(`${what}: :${a.name} needs one of gt, ge, lt, le, eq, ne`, v!);
    }
  }
  if (what === 'size' && !groups.has('match')) fail('size: needs :over or :under', at);
  if (seen.has('last') && !seen.has('index') && what !== 'duplicate' && what !== 'addheader')
    fail(`${what}: :last needs :index (RFC 5260 §6)`, at);
  if (seen.has('regex')) {
    const keys = positional[positional.length - 1];
    for (const k of keys?.kind === 'strings' ? keys.values : []) {
      const why = k.includes('${') ? null : regexProblem(k);
      if (why) fail(`${what}: not a regular expression: ${why}`, keys!);
    }
  }
  const zone = args.findIndex((a) => a.kind === 'tag' && a.name === 'zone');
  const zoneValue = zone >= 0 ? args[zone + 1] : undefined;
  if (zoneValue?.kind === 'strings' && !/^[+-]\d{4}$/.test(zoneValue.values[0]!))
    fail(`${what}: :zone needs a zone such as "+0100" (RFC 5260 §4.1)`, zoneValue);
  const part = what === 'date' ? positional[1] : what === 'currentdate' ? positional[0] : undefined;
  if (part?.kind === 'strings' && !DATE_PARTS.has(part.values[0]!.toLowerCase()))
    fail(`${what}: unknown date-part "${part.values[0]}" (RFC 5260 §4.2)`, part);
  if (
    positional.length !== spec.positional.length &&
    !(
      spec.optional &&
      positional.length >= spec.positional.length - spec.optional &&
      positional.length < spec.positional.length
    )
  )
    fail(
      `${what}: takes ${spec.positional.length} argument${spec.positional.length === 1 ? '' : 's'} besides its tags, found ${positional.length}`,
      positional[spec.positional.length] ?? at,
    );
  spec.positional.forEach((kind, i) => {
    if (positional[i] && !fits(positional[i]!, kind))
      fail(`${what}: argument ${i + 1} must be ${label(kind)}`, positional[i]!);
  });
}

const fits = (a: Argument, kind: Kind) =>
  kind === 'number'
    ? a.kind === 'number'
    : kind === 'string'
      ? a.kind === 'strings' && !a.list
      : a.kind === 'strings';
const label = (kind: Kind) =>
  kind === 'number' ? 'a number' : kind === 'string' ? 'a string' : 'a string list';

function checkTests(
  what: string,
  spec: Spec,
  tests: Test[],
  required: Set<string>,
  at: { line: number; column: number },
) {
  if (!spec.tests && tests.length)
    fail(`${what}: takes no test; is a ";" missing before "${tests[0]!.name}"?`, tests[0]!);
  if (spec.tests === 'one' && tests.length !== 1) fail(`${what}: needs one test`, tests[1] ?? at);
  if (spec.tests === 'list' && tests.length === 0) fail(`${what}: needs a list of tests`, at);
  for (const t of tests) checkTest(t, required);
}

function checkTest(t: Test, required: Set<string>): void {
  const spec = TESTS[t.name];
  if (!spec) fail(`unknown test "${t.name}"`, t);
  if (spec!.ext && !required.has(spec!.ext)) fail(`${t.name}: needs require "${spec!.ext}"`, t);
  checkArgs(t.name, spec!, t.args, required, t);
  checkTests(t.name, spec!, t.tests, required, t);
}

function checkCommands(commands: Command[], required: Set<string>, top: boolean): void {
  let previous: string | null = null;
  let requiresDone = !top;
  for (const c of commands) {
    const spec = COMMANDS[c.name];
    if (!spec) fail(`unknown command "${c.name}"`, c);
    if (c.name === 'require') {
      if (requiresDone) fail('require: must come before every other command', c);
    } else requiresDone = true;
    if ((c.name === 'elsif' || c.name === 'else') && previous !== 'if' && previous !== 'elsif')
      fail(`${c.name}: must follow if or elsif`, c);
    if (spec!.ext && !required.has(spec!.ext)) fail(`${c.name}: needs require "${spec!.ext}"`, c);
    if (c.name === 'global' && !required.has('variables')) fail('global: needs require "variables"', c);
    checkArgs(c.name, spec!, c.args, required, c);
    checkTests(c.name, spec!, c.tests, required, c);
    if (spec!.block === 'required' && !c.block) fail(`${c.name}: needs a block in braces`, c);
    if (spec!.block !== 'required' && c.block) fail(`${c.name}: takes no block`, c);
    if (c.name === 'require') {
      for (const cap of (c.args[0] as Extract<Argument, { kind: 'strings' }>).values) {
        if (
          !(EXTENSIONS as readonly string[]).includes(cap.toLowerCase()) &&
          !/^comparator-i;(octet|ascii-casemap)$/i.test(cap)
        )
          fail(`require: the extension "${cap}" is not supported`, c.args[0]!);
        required.add(cap.toLowerCase());
        // RFC 6131 §2: vacation-seconds implies vacation; RFC 5235 §3.2: spamtestplus implies spamtest.
        if (cap.toLowerCase() === 'vacation-seconds') required.add('vacation');
        if (cap.toLowerCase() === 'spamtestplus') required.add('spamtest');
      }
    }
    if (c.block) checkCommands(c.block, required, false);
    previous = c.name;
  }
}

/** Parses and validates a script; throws SieveError (with line and column) for the first problem. */
export function compile(script: string, options: ParseOptions = {}): Command[] {
  const commands = parse(script, options);
  checkCommands(commands, new Set(), true);
  return commands;
}
