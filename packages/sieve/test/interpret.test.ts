import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type Action, compile, run, SieveRuntimeError, wildcardMatch } from '../src/index.ts';

/** A message from a header block ("Name: value" lines) and a size. */
function message(headers: string, size = 1000) {
  const fields = headers
    .split('\n')
    .filter(Boolean)
    .map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()] as const);
  return {
    size,
    header: (name: string) => fields.filter(([k]) => k === name.toLowerCase()).map(([, v]) => v),
  };
}
const MSG = message(
  'From: Ann <ann@example.com>\nTo: bob+lists@example.org, Carol <carol@example.net>\nSubject: [list] Make money fast\nX-Spam-Score: 7\nX-Spam-Score: 2\n',
);
const ENV = { from: 'ann@example.com', to: 'bob+lists@example.org' };
const actions = (script: string, msg = MSG, env = ENV): Action[] => run(compile(script), msg, env);
const REQ =
  'require ["fileinto", "envelope", "copy", "imap4flags", "subaddress", "relational", "comparator-i;ascii-numeric", "reject"];\n';

describe('Sieve interpreter (RFC 5228)', () => {
  const table: Array<[string, string, Action[]]> = [
    ['an empty script keeps (implicit keep, §2.10.2)', '', [{ type: 'keep' }]],
    ['discard cancels the implicit keep', 'discard;', []],
    [
      'fileinto files and cancels the keep',
      `${REQ}fileinto "Lists";`,
      [{ type: 'fileinto', mailbox: 'Lists', copy: false, create: false }],
    ],
    [
      'fileinto :copy keeps too (RFC 3894)',
      `${REQ}fileinto :copy "Lists";`,
      [{ type: 'keep' }, { type: 'fileinto', mailbox: 'Lists', copy: true, create: false }],
    ],
    [
      'the same fileinto twice is done once (§4.1)',
      `${REQ}fileinto "A"; fileinto "A";`,
      [{ type: 'fileinto', mailbox: 'A', copy: false, create: false }],
    ],
    ['redirect', 'redirect "x@example.net";', [{ type: 'redirect', address: 'x@example.net', copy: false }]],
    ['stop ends the script; the keep stays', 'stop; discard;', [{ type: 'keep' }]],
    [
      'header :contains is case-insensitive by default',
      'if header :contains "subject" "MAKE MONEY" { discard; }',
      [],
    ],
    [
      'header :is must match the whole value',
      'if header :is "subject" "[list]" { discard; }',
      [{ type: 'keep' }],
    ],
    ['header :matches with * and ?', 'if header :matches "subject" "[list] *f?st" { discard; }', []],
    [
      'i;octet compares case',
      'if header :contains :comparator "i;octet" "subject" "MAKE" { discard; }',
      [{ type: 'keep' }],
    ],
    [
      'address :domain over every address of the field',
      'if address :domain :is "to" "example.net" { discard; }',
      [],
    ],
    ['address :localpart', 'if address :localpart :is "from" "ann" { discard; }', []],
    [
      'address :detail (RFC 5233)',
      `${REQ}if address :detail "to" "lists" { fileinto "Lists"; }`,
      [{ type: 'fileinto', mailbox: 'Lists', copy: false, create: false }],
    ],
    ['address :user', `${REQ}if address :user :is "to" "bob" { discard; }`, []],
    [
      'envelope from and to',
      `${REQ}if allof (envelope :domain "from" "example.com", envelope :detail "to" "lists") { discard; }`,
      [],
    ],
    ['exists needs every field', 'if exists ["From", "X-None"] { discard; }', [{ type: 'keep' }]],
    [
      'size :over and :under',
      'if size :over 1K { discard; } if size :under 1001 { redirect "s@example.net"; }',
      [{ type: 'redirect', address: 's@example.net', copy: false }],
    ],
    ['not, anyof, allof', 'if not anyof (false, allof (true, false)) { discard; }', []],
    [
      'if / elsif / else take one branch',
      'if false { discard; } elsif true { redirect "a@b.example"; } else { redirect "c@d.example"; }',
      [{ type: 'redirect', address: 'a@b.example', copy: false }],
    ],
    [
      'relational :value with i;ascii-numeric (RFC 5231)',
      `${REQ}if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5" { discard; }`,
      [],
    ],
    [
      'relational :count counts the values',
      `${REQ}if header :count "eq" :comparator "i;ascii-numeric" "x-spam-score" "2" { discard; }`,
      [],
    ],
    [
      'imap4flags on the implicit keep',
      `${REQ}addflag ["\\\\Flagged", "$Work"]; removeflag "$work";`,
      [{ type: 'keep', flags: ['\\Flagged'] }],
    ],
    [
      'fileinto :flags',
      `${REQ}fileinto :flags "\\\\Seen" "Read";`,
      [{ type: 'fileinto', mailbox: 'Read', copy: false, create: false, flags: ['\\Seen'] }],
    ],
    [
      'reject refuses and files nothing',
      `${REQ}reject "no thanks";`,
      [{ type: 'reject', reason: 'no thanks', ereject: false }],
    ],
  ];
  for (const [name, script, want] of table) it(name, () => assert.deepEqual(actions(script), want));

  it('runs the RFC 5228 §9 example as its comments say', () => {
    const example = `require ["fileinto"];
      if header :is "Sender" "owner-ietf-mta-filters@imc.org" { fileinto "filter"; }
      elsif address :DOMAIN :is ["From", "To"] "example.com" { keep; }
      elsif anyof (NOT address :all :contains ["To", "Cc", "Bcc"] "me@example.com",
                   header :matches "subject" ["*make*money*fast*", "*university*dipl*mas*"]) { fileinto "spam"; }
      else { fileinto "personal"; }`;
    const at = (headers: string) => run(compile(example), message(headers), ENV);
    assert.deepEqual(at('Sender: owner-ietf-mta-filters@imc.org\n'), [
      { type: 'fileinto', mailbox: 'filter', copy: false, create: false },
    ]);
    assert.deepEqual(at('From: x@example.com\nTo: me@example.com\n'), [{ type: 'keep' }]);
    assert.deepEqual(at('From: x@else.example\nCc: me@example.com\nSubject: Make MONEY fast\n'), [
      { type: 'fileinto', mailbox: 'spam', copy: false, create: false },
    ]);
    assert.deepEqual(at('From: x@else.example\nTo: you@else.example\n'), [
      { type: 'fileinto', mailbox: 'spam', copy: false, create: false },
    ]);
    assert.deepEqual(at('From: x@else.example\nCc: me@example.com\n'), [
      { type: 'fileinto', mailbox: 'personal', copy: false, create: false },
    ]);
  });

  it('errors (so the caller keeps the message) on what it does not run, and on what exceeds its bounds', () => {
    const throws = (script: string, why: RegExp) =>
      assert.throws(
        () => actions(script),
        (e: unknown) => e instanceof SieveRuntimeError && why.test(e.message),
      );
    throws('require "vacation"; vacation "away"; vacation "again";', /vacation used twice/);
    throws('require ["vacation", "reject"]; vacation "away"; reject "no";', /reject together/);
    throws('require ["reject", "fileinto"]; reject "no"; fileinto "x";', /reject together/);
    throws(
      Array.from({ length: 6 }, (_, i) => `redirect "r${i}@example.net";`).join(' '),
      /more than 4 redirects/,
    );
    // 10,000 redirects: refused at the fifth, in no time.
    const start = performance.now();
    throws(
      Array.from({ length: 10_000 }, (_, i) => `redirect "r${i}@example.net";`).join(' '),
      /more than 4 redirects/,
    );
    assert.ok(performance.now() - start < 2000);
    throws(
      `require "fileinto"; ${Array.from({ length: 40 }, (_, i) => `fileinto "f${i}";`).join(' ')}`,
      /more than 32 actions/,
    );
    assert.throws(
      () => run(compile('if true { keep; } '.repeat(20)), MSG, ENV, { maxSteps: 10 }),
      /ran too long/,
    );
  });
});

describe('vacation (RFC 5230, RFC 6131)', () => {
  const vacation = (script: string) => {
    const all = actions(script);
    const v = all.find((a) => a.type === 'vacation');
    assert.ok(v && v.type === 'vacation', JSON.stringify(all));
    return { v, all };
  };
  it('asks for a reply with its arguments, keeps the message, and bounds the period', () => {
    const { v, all } = vacation(
      'require "vacation"; vacation :days 3 :subject "Away" :from "bob@example.org" :addresses ["b@example.org", "bob@example.net"] :handle "h1" "I am away";',
    );
    assert.deepEqual(all[0], { type: 'keep' }, 'vacation does not cancel the implicit keep (§4.7)');
    assert.deepEqual(v, {
      type: 'vacation',
      reason: 'I am away',
      subject: 'Away',
      from: 'bob@example.org',
      addresses: ['b@example.org', 'bob@example.net'],
      mime: false,
      handle: 'h1',
      seconds: 3 * 86_400,
    });
    assert.equal(vacation('require "vacation"; vacation "x";').v.seconds, 7 * 86_400, 'default 7 days');
    assert.equal(vacation('require "vacation"; vacation :days 0 "x";').v.seconds, 86_400, 'at least a day');
    assert.equal(vacation('require "vacation"; vacation :days 900 "x";').v.seconds, 60 * 86_400);
    assert.equal(
      vacation('require "vacation-seconds"; vacation :seconds 90000 "x";').v.seconds,
      90_000,
      'vacation-seconds implies vacation (RFC 6131 §2)',
    );
    assert.equal(vacation('require "vacation-seconds"; vacation :seconds 5 "x";').v.seconds, 86_400);
    assert.equal(
      vacation('require "vacation"; vacation :mime "Content-Type: text/plain\r\n\r\nx";').v.mime,
      true,
    );
  });

  it('tells replies with different arguments apart when there is no :handle (§4.2)', () => {
    const h = (script: string) => vacation(`require "vacation"; ${script}`).v.handle;
    assert.equal(h('vacation "away";'), h('vacation :days 3 "away";'), ':days is not part of it');
    assert.notEqual(h('vacation "away";'), h('vacation "back monday";'));
    assert.notEqual(h('vacation "away";'), h('vacation :subject "Out" "away";'));
  });

  it('refuses :days with :seconds, and :seconds without its extension', () => {
    assert.throws(
      () => compile('require "vacation-seconds"; vacation :days 1 :seconds 5 "x";'),
      /cannot be used together/,
    );
    assert.throws(() => compile('require "vacation"; vacation :seconds 5 "x";'), /vacation-seconds/);
  });
});

describe('date, currentdate and index (RFC 5260)', () => {
  const msg = message(
    'Date: Tue, 1 Dec 2026 23:30:05 -0500 (EST)\nReceived: from a; Wed, 2 Dec 2026 10:00:00 +0000\nReceived: from b; Tue, 1 Dec 2026 09:00:00 +0000\nSubject: s\n',
  );
  const now = new Date('2026-12-24T08:15:00Z');
  const go = (script: string, zone = 60) =>
    run(compile(`require ["date", "relational", "index", "fileinto"];\n${script}`), msg, ENV, { now, zone });
  const filed = (script: string, zone?: number) =>
    go(`${script} { fileinto "hit"; }`, zone).some((a) => a.type === 'fileinto');

  it('reads the date parts of a header field in the zone asked for', () => {
    assert.ok(filed('if date :zone "+0000" "date" "date" "2026-12-02"'), 'in UTC it is the 2nd');
    assert.ok(filed('if date :originalzone "date" "date" "2026-12-01"'), 'as written it is the 1st');
    assert.ok(filed('if date "date" "hour" "05"', 60), 'local zone +0100 without :zone');
    assert.ok(filed('if date :originalzone "date" "zone" "-0500"'));
    assert.ok(filed('if date :zone "+0000" "date" "iso8601" "2026-12-02T04:30:05+00:00"'));
    assert.ok(filed('if date :originalzone "date" "std11" "Tue, 01 Dec 2026 23:30:05 -0500"'));
    assert.ok(filed('if date :originalzone "date" "weekday" "2"'), 'Tuesday');
    assert.ok(filed('if date :zone "+0000" "date" "julian" "61376"'), 'Modified Julian Day of 2026-12-02');
    assert.ok(filed('if date :value "ge" :originalzone "date" "time" "23:00:00"'));
    assert.ok(!filed('if date "x-missing" "year" "2026"'), 'an absent field is false');
    assert.ok(!filed('if date "subject" "year" "2026"'), 'a field that is no date is false');
  });

  it('compares the current date, for a vacation with an end', () => {
    assert.ok(filed('if currentdate :value "le" "date" "2026-12-31"'));
    assert.ok(!filed('if currentdate :value "le" "date" "2026-12-23"'));
    assert.ok(filed('if currentdate :zone "-1000" "date" "2026-12-23"'), 'in -1000 it is still the 23rd');
    assert.ok(filed('if currentdate "hour" "09"', 60));
  });

  it('picks one occurrence with :index, counted from the end with :last', () => {
    assert.ok(filed('if header :index 1 :contains "received" "from a"'));
    assert.ok(!filed('if header :index 1 :contains "received" "from b"'));
    assert.ok(filed('if header :index 1 :last :contains "received" "from b"'));
    assert.ok(!filed('if header :index 3 :contains "received" "from"'));
    assert.ok(filed('if date :index 2 :zone "+0000" "received" "day" "01"'));
  });

  it('refuses bad date-parts, zones and :last without :index when the script is put', () => {
    assert.throws(() => compile('require "date"; if currentdate "fortnight" "1" {}'), /unknown date-part/);
    assert.throws(() => compile('require "date"; if currentdate :zone "CET" "date" "x" {}'), /zone/);
    assert.throws(() => compile('require "index"; if header :last "a" "b" {}'), /:last needs :index/);
    assert.throws(() => compile('if header :index 1 "a" "b" {}'), /needs require "index"/);
  });
});

describe('include and return (RFC 6609)', () => {
  const scripts: Record<string, string> = {
    rules:
      'require ["fileinto", "include"]; if header :contains "subject" "money" { fileinto "Spam"; return; } fileinto "Rules";',
    loop: 'require "include"; include :personal "loop";',
    stopper: 'stop;',
    tagger: 'require "imap4flags"; addflag "$Work";',
  };
  const go = (script: string) =>
    run(compile(`require ["include", "fileinto", "imap4flags"];\n${script}`), MSG, ENV, {
      include: (name) => (scripts[name] ? compile(scripts[name]!) : null),
    });

  it('runs the included script where it stands; return ends only that script', () => {
    assert.deepEqual(go('include "rules"; fileinto "After";'), [
      { type: 'fileinto', mailbox: 'Spam', copy: false, create: false },
      { type: 'fileinto', mailbox: 'After', copy: false, create: false },
    ]);
    // return in the main script is stop.
    assert.deepEqual(go('return; fileinto "Never";'), [{ type: 'keep' }]);
    // stop in an included script ends everything.
    assert.deepEqual(go('include "stopper"; fileinto "Never";'), [{ type: 'keep' }]);
  });

  it(':once includes a script one time; :optional skips a missing one; the rest is an error, so the message is kept', () => {
    assert.deepEqual(go('include :once "tagger"; include :once "tagger"; keep;'), [
      { type: 'keep', flags: ['$Work'] },
    ]);
    assert.deepEqual(go('include :optional "ghost";'), [{ type: 'keep' }]);
    assert.throws(() => go('include "ghost";'), /no script "ghost"/);
    assert.throws(() => go('include :global "rules";'), /no script/);
    assert.throws(() => go('include "loop";'), /a loop/);
  });
});

describe(':matches (RFC 5228 §2.7.1)', () => {
  const table: Array<[string, string, boolean]> = [
    ['abc', 'a*c', true],
    ['abc', 'a?c', true],
    ['ac', 'a?c', false],
    ['', '*', true],
    ['a*b', 'a\\*b', true],
    ['axb', 'a\\*b', false],
    ['x?y', 'x\\?y', true],
    ['héllo', 'h?llo', true],
    ['abcabd', '*abd', true],
    ['abc', 'abc*d', false],
  ];
  for (const [value, pattern, want] of table)
    it(`${JSON.stringify(value)} ${want ? 'matches' : 'does not match'} ${JSON.stringify(pattern)}`, () =>
      assert.equal(wildcardMatch(value, pattern), want));

  it('takes bounded time on the patterns that make naive matchers exponential', () => {
    const t = performance.now();
    assert.equal(wildcardMatch('a'.repeat(20_000), `${'*a'.repeat(30)}*b`), false);
    assert.ok(performance.now() - t < 2000, `${performance.now() - t} ms`);
  });

  it('agrees with a regular expression built from the same pattern (fast-check)', () => {
    const alphabet = fc.constantFrom('a', 'b', '*', '?');
    fc.assert(
      fc.property(
        fc.array(fc.constantFrom('a', 'b'), { maxLength: 12 }),
        fc.array(alphabet, { maxLength: 8 }),
        (v, p) => {
          const value = v.join('');
          const pattern = p.join('');
          const re = new RegExp(`^${pattern.replace(/\*/g, '.*').replace(/\?/g, '.')}$`, 's');
          assert.equal(wildcardMatch(value, pattern), re.test(value), `${value} ~ ${pattern}`);
        },
      ),
      { numRuns: 3000 },
    );
  });
});
