// The extensions run besides the core (src/interpret.ts): variables (RFC 5229), encoded-character
// (RFC 5228 §2.4.2.4), regex (draft-ietf-sieve-regex), body (RFC 5173), environment (RFC 5183),
// spamtest/spamtestplus (RFC 5235), mailboxexists (RFC 5490), duplicate (RFC 7352), hasflag (RFC 5232),
// global (RFC 6609); with the RFCs' own examples where they give them, and hostile scripts bounded.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  type Action,
  type BodyTransform,
  compile,
  type RunOptions,
  run,
  SieveRuntimeError,
  wildcardCaptures,
} from '../src/index.ts';

function message(headers: Record<string, string[]>, body?: (t: BodyTransform) => string[]) {
  return {
    size: 1000,
    header: (name: string) => headers[name.toLowerCase()] ?? [],
    ...(body ? { body } : {}),
  };
}
const MSG = message({
  subject: ['[acme-users] [fwd] version 1.0 is out'],
  'list-id': ['Acme users <acme-users@lists.example.org>'],
  from: ['Ann <ann@example.com>'],
  'message-id': ['<m1@example.com>'],
});
const ENV = { from: 'ann@example.com', to: 'bob@example.org' };
const go = (script: string, options: RunOptions = {}, msg = MSG): Action[] =>
  run(compile(script), msg, ENV, options);
const folders = (a: Action[]) =>
  a.filter((x) => x.type === 'fileinto').map((x) => (x as { mailbox: string }).mailbox);

describe('variables (RFC 5229)', () => {
  it('sets match variables from :matches, non-greedy but for the last wildcard (§3.2 examples)', () => {
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "variables"];\nif header :matches "List-ID" "*<*@*" { fileinto "INBOX.lists.${2}"; stop; }',
        ),
      ),
      ['INBOX.lists.acme-users'],
    );
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "variables"];\nif header :matches "Subject" "[*] *" { fileinto "${1}/${2}"; }',
        ),
      ),
      ['acme-users/[fwd] version 1.0 is out'],
    );
    assert.deepEqual(wildcardCaptures('a.b.c', '*.*'), ['a.b.c', 'a', 'b.c']);
    assert.deepEqual(wildcardCaptures('abc', '?b?'), ['abc', 'a', 'c']);
    assert.deepEqual(
      wildcardCaptures('Hello', 'h*', 'hello'),
      ['Hello', 'ello'],
      'cut from the value as written',
    );
    assert.equal(wildcardCaptures('abc', 'a*d'), null);
  });

  it('applies set modifiers by precedence, and the string test (§4, §5)', () => {
    const v = (mods: string, value: string) =>
      folders(go(`require ["fileinto", "variables"];\nset ${mods} "x" "${value}"; fileinto "\${x}";`))[0];
    assert.equal(v(':upper', 'juMBlEd lETteRS'), 'JUMBLED LETTERS');
    assert.equal(v(':lower :upperfirst', 'juMBlEd lETteRS'), 'Jumbled letters');
    assert.equal(
      v(':upperfirst :lower', 'juMBlEd lETteRS'),
      'Jumbled letters',
      'order of the tags does not matter',
    );
    assert.equal(v(':length', 'juMBlEd lETteRS'), '15');
    assert.equal(v(':quotewildcard', 'a*b?c'), 'a\\*b\\?c');
    assert.equal(v(':length :quotewildcard', 'a*'), '3');
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "variables", "relational"];\nset "a" "x"; set "b" ""; if string :count "eq" ["${a}", "${b}"] "1" { fileinto "one"; }',
        ),
      ),
      ['one'],
    );
    assert.deepEqual(
      folders(go('require ["fileinto", "variables"];\nif string :is "${unknown}" "" { fileinto "empty"; }')),
      ['empty'],
    );
    assert.deepEqual(
      folders(go('require ["fileinto", "variables"];\nset "A" "1"; fileinto "${a}${A}";')),
      ['11'],
      'names without case',
    );
    assert.deepEqual(
      folders(go('require "fileinto";\nfileinto "${x}";')),
      ['${x}'],
      'not expanded without require',
    );
    assert.throws(
      () => compile('require "variables"; set :lower :upper "a" "b";'),
      /cannot be used together/,
    );
  });

  it('bounds every value, so doubling a variable cannot grow without end (§6)', () => {
    const doubling = Array.from({ length: 40 }, () => 'set "a" "${a}${a}";').join('\n');
    const out = go(
      `require ["fileinto", "variables"];\nset "a" "xy";\n${doubling}\nset :length "n" "\${a}"; fileinto "\${n}";`,
    );
    assert.deepEqual(folders(out), ['4096']);
  });
});

describe('encoded-character (RFC 5228 §2.4.2.4)', () => {
  it('decodes ${hex:} and ${unicode:} only when required', () => {
    assert.deepEqual(
      folders(go('require ["fileinto", "encoded-character"];\nfileinto "${hex: 49 4E 42 4F 58}";')),
      ['INBOX'],
    );
    assert.deepEqual(
      folders(go('require ["fileinto", "encoded-character"];\nfileinto "${unicode:263a}!";')),
      ['☺!'],
    );
    assert.deepEqual(
      folders(go('require ["fileinto", "encoded-character"];\nfileinto "${hex:4}";')),
      ['${hex:4}'],
      'odd hex stays',
    );
    assert.throws(
      () => go('require ["fileinto", "encoded-character"];\nfileinto "${unicode:D800}";'),
      SieveRuntimeError,
    );
  });
});

describe('regex', () => {
  it('matches anywhere, case-insensitively by default, and sets the match variables', () => {
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "regex", "variables"];\nif header :regex "subject" "version ([0-9]+)\\\\.([0-9]+)" { fileinto "v${1}-${2}"; }',
        ),
      ),
      ['v1-0'],
    );
    assert.deepEqual(
      folders(
        go('require ["fileinto", "regex"];\nif header :regex "subject" "^\\\\[ACME" { fileinto "yes"; }'),
      ),
      ['yes'],
    );
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "regex"];\nif header :regex :comparator "i;octet" "subject" "^\\\\[ACME" { fileinto "yes"; }',
        ),
      ),
      [],
    );
    assert.throws(
      () => compile('require "regex"; if header :regex "subject" "(" {}'),
      /not a regular expression/,
    );
  });

  it('takes linear time on a pattern that makes a backtracking engine explode', () => {
    const long = message({ subject: [`${'a'.repeat(30_000)}!`] });
    const start = performance.now();
    const out = go(
      'require ["fileinto", "regex"];\nif header :regex "subject" "^(a+)+$" { fileinto "no"; }',
      {},
      long,
    );
    assert.deepEqual(folders(out), []);
    assert.ok(performance.now() - start < 1000, `${performance.now() - start} ms`);
  });
});

describe('body, environment, spamtest, mailboxexists, duplicate, hasflag', () => {
  const seen: BodyTransform[] = [];
  const withBody = message({}, (t) => {
    seen.push(t);
    return t.kind === 'raw'
      ? ['=48ello raw']
      : t.kind === 'text'
        ? ['Hello text']
        : [`part of ${t.types.join('|')}`];
  });
  it('body: :text by default, :raw, :content with its types', () => {
    assert.deepEqual(
      folders(
        go('require ["fileinto", "body"];\nif body :contains "hello TEXT" { fileinto "t"; }', {}, withBody),
      ),
      ['t'],
    );
    assert.deepEqual(
      folders(
        go('require ["fileinto", "body"];\nif body :raw :contains "=48" { fileinto "r"; }', {}, withBody),
      ),
      ['r'],
    );
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "body"];\nif body :content ["text/html", "image"] :contains "text/html|image" { fileinto "c"; }',
          {},
          withBody,
        ),
      ),
      ['c'],
    );
    assert.deepEqual(
      seen.map((t) => t.kind),
      ['text', 'raw', 'content'],
    );
    assert.throws(() => go('require "body"; if body :contains "x" {}'), /not available/);
  });
  it('environment: the items given, false for others', () => {
    const env = { environment: { name: 'Mailwerk', phase: 'during', domain: 'mail.example.org' } };
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "environment"];\nif environment :is "phase" "during" { fileinto "p"; }',
          env,
        ),
      ),
      ['p'],
    );
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "environment"];\nif environment :contains "nosuch" "" { fileinto "n"; }',
          env,
        ),
      ),
      [],
    );
  });
  it('spamtest: 0 unscanned, 1-10 by score against the threshold; :percent 0-100 (RFC 5235)', () => {
    const at = (score: number | null, test: string) =>
      folders(
        go(
          `require ["fileinto", "spamtestplus", "relational", "comparator-i;ascii-numeric"];\nif ${test} { fileinto "hit"; }`,
          {
            spam: score === null ? null : { score, required: 15 },
          },
        ),
      ).length === 1;
    assert.ok(at(null, 'spamtest :is "0"'));
    assert.ok(at(-2, 'spamtest :is "1"'));
    assert.ok(at(15, 'spamtest :value "ge" "9"'));
    assert.ok(!at(3, 'spamtest :value "ge" "5"'));
    assert.ok(at(30, 'spamtest :percent :is "100"'));
    assert.ok(at(7.5, 'spamtest :percent :value "eq" "50"'));
  });
  it('mailboxexists, duplicate and hasflag', () => {
    const exists = { mailboxExists: (n: string) => n === 'Lists' };
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "mailbox"];\nif mailboxexists "Lists" { fileinto "Lists"; } if mailboxexists ["Lists", "No"] { fileinto "No"; }',
          exists,
        ),
      ),
      ['Lists'],
    );
    const asked: Array<[string, number]> = [];
    const dup = {
      duplicate: (id: string, s: number) => {
        asked.push([id, s]);
        return id.endsWith('<m1@example.com>');
      },
    };
    assert.deepEqual(
      folders(go('require ["fileinto", "duplicate"];\nif duplicate { fileinto "Dups"; }', dup)),
      ['Dups'],
    );
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "duplicate"];\nif duplicate :handle "h" :header "list-id" :seconds 60 { fileinto "x"; }',
          dup,
        ),
      ),
      [],
    );
    assert.deepEqual(asked[1], ['h\0Acme users <acme-users@lists.example.org>', 60]);
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "imap4flags"];\naddflag "\\\\Seen"; if hasflag :is "\\\\seen" { fileinto "s"; }',
        ),
      ),
      ['s'],
    );
  });
  it('global variables are shared with included scripts (RFC 6609 §3.4)', () => {
    const inc = {
      include: () => compile('require ["include", "variables"]; global "who"; set "who" "inner";'),
    };
    assert.deepEqual(
      folders(
        go(
          'require ["fileinto", "include", "variables"];\nglobal "who"; set "who" "outer"; include "x"; fileinto "${who}";',
          inc,
        ),
      ),
      ['inner'],
    );
  });
});

describe('hostile scripts', () => {
  it('stops a run that takes too long in wall-clock time', () => {
    const slow = message({ subject: ['a'.repeat(20_000)] });
    const script = `require "fileinto";\n${Array.from({ length: 2000 }, () => 'if header :matches "subject" "*a*a*a*a*a*a*a*a*b" { fileinto "x"; }').join('\n')}`;
    assert.throws(() => go(script, { maxMs: 50 }, slow), /longer than 50 ms|ran too long/);
  });
  it('never throws anything but SieveRuntimeError, whatever the variables hold (fast-check)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.string({ maxLength: 50 }), (value, pattern) => {
        const s = (x: string) => x.replace(/\\/g, '\\\\').replace(/"/g, '\\"');
        try {
          go(
            `require ["fileinto", "variables", "encoded-character", "regex"];\nset "v" "${s(value)}";\nif string :matches "\${v}" "${s(pattern)}" { fileinto "\${1}"; }\nif string :regex "\${v}" "x|\${1}" { fileinto "r"; }`,
          );
        } catch (err) {
          assert.ok(err instanceof SieveRuntimeError, String(err));
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('editheader (RFC 5293)', () => {
  const fields = [
    { name: 'received', value: 'from a' },
    { name: 'x-list', value: 'one' },
    { name: 'subject', value: 'Hello' },
    { name: 'x-list', value: 'two' },
  ];
  const msg = {
    size: 100,
    header: (n: string) => fields.filter((f) => f.name === n.toLowerCase()).map((f) => f.value),
    fields: () => fields,
  };
  const edits = (script: string) => {
    const out = run(compile(`require ["editheader", "fileinto", "index"];\n${script}`), msg, ENV);
    return { edit: out.find((a) => a.type === 'editheader'), folders: folders(out) };
  };
  it('adds on top or at the end, deletes by name, index and value, and later tests see the result', () => {
    assert.deepEqual(
      edits(
        'addheader "X-Sorted" "yes"; addheader :last "X-Trace" "z"; if header :is "x-sorted" "yes" { fileinto "seen"; }',
      ),
      {
        edit: {
          type: 'editheader',
          deleted: [],
          top: [{ name: 'X-Sorted', value: 'yes' }],
          bottom: [{ name: 'X-Trace', value: 'z' }],
        },
        folders: ['seen'],
      },
    );
    assert.deepEqual(edits('deleteheader "X-List"; if not exists "x-list" { fileinto "gone"; }'), {
      edit: {
        type: 'editheader',
        deleted: [
          { name: 'x-list', occurrence: 1 },
          { name: 'x-list', occurrence: 2 },
        ],
        top: [],
        bottom: [],
      },
      folders: ['gone'],
    });
    assert.deepEqual(
      edits('deleteheader :index 1 :last "x-list";').edit?.type === 'editheader' &&
        edits('deleteheader :index 1 :last "x-list";').edit,
      {
        type: 'editheader',
        deleted: [{ name: 'x-list', occurrence: 2 }],
        top: [],
        bottom: [],
      },
    );
    assert.deepEqual((edits('deleteheader :matches "x-list" "o*";').edit as { deleted: unknown[] }).deleted, [
      { name: 'x-list', occurrence: 1 },
    ]);
    // An added field deleted again is simply not added.
    assert.deepEqual(edits('addheader "X-Tmp" "1"; deleteheader "x-tmp";').edit, {
      type: 'editheader',
      deleted: [],
      top: [],
      bottom: [],
    });
    assert.equal(edits('keep;').edit, undefined, 'no edit, no action');
  });
  it('protects Received and Auto-Submitted, and refuses a bad field name', () => {
    assert.throws(() => edits('deleteheader "Received";'), /protected/);
    assert.throws(() => edits('addheader "Auto-Submitted" "no";'), /protected/);
    assert.throws(() => edits('addheader "Bad Name" "x";'), /not a field name/);
  });
});
