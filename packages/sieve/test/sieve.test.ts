import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compile, parse, SieveError, tokenize } from '../src/index.ts';

/** The error a script gets, as "line:column reason". */
const error = (script: string): string => {
  try {
    compile(script);
  } catch (err) {
    if (err instanceof SieveError) return `${err.line}:${err.column} ${err.reason}`;
    throw err;
  }
  return 'ok';
};

describe('Sieve lexer (RFC 5228 §2)', () => {
  it('reads strings with their escapes, multi-line strings with dot-stuffing, numbers with quantifiers', () => {
    const t = tokenize(
      '"a\\"b\\\\c\\d" 10K 2m 1G :Over Fileinto # comment\n/* block\ncomment */ text: # why\nline 1\n..dot\n.\n;',
    );
    assert.deepEqual(
      t.map((x) => [x.kind, x.kind === 'number' ? x.number : x.text]),
      [
        ['string', 'a"b\\cd'],
        ['number', 10240],
        ['number', 2 * 1024 * 1024],
        ['number', 1024 ** 3],
        ['tag', 'over'],
        ['identifier', 'fileinto'],
        ['string', 'line 1\r\n.dot\r\n'],
        [';', ';'],
      ],
    );
    assert.deepEqual([t[7]!.line, t[7]!.column], [7, 1], 'positions count the lines of comments and strings');
  });

  it('says where a string, comment or multi-line string is left open', () => {
    assert.equal(error('keep;\n  "abc'), '2:3 a string is not closed with "');
    assert.equal(error('/* no end'), '1:1 a comment that begins with /* is not closed with */');
    assert.equal(
      error('reject text:\nno dot line\n'),
      '1:8 a multi-line string is not ended by a line with "." alone',
    );
    assert.equal(error('keep; 99999999999999999999;'), '1:7 a number too large');
    assert.equal(error('keep; @'), '1:7 unexpected character "@"');
  });
});

describe('Sieve parser and validator', () => {
  it("accepts the RFC's own example scripts (RFC 5228 §9)", () => {
    const example = `
      # Example Sieve Filter
      # Declare any optional features or extension used by the script
      require ["fileinto"];

      # Handle messages from known mailing lists
      # Move messages from IETF filter discussion list to filter mailbox
      if header :is "Sender" "owner-ietf-mta-filters@imc.org"
              {
              fileinto "filter";  # move to "filter" mailbox
              }
      #
      # Keep all messages to or from people in my company
      #
      elsif address :DOMAIN :is ["From", "To"] "example.com"
              {
              keep;               # keep in "In" mailbox
              }

      #
      # Try and catch unsolicited email.  If a message is not to me,
      # or it contains a subject known to be spam, file it away.
      #
      elsif anyof (NOT address :all :contains
                     ["To", "Cc", "Bcc"] "me@example.com",
                   header :matches "subject"
                     ["*make*money*fast*", "*university*dipl*mas*"])
              {
              fileinto "spam";   # move to "spam" mailbox
              }
      else
              {
              # Move all other (non-company) mail to "personal"
              # mailbox.
              fileinto "personal";
              }`;
    const tree = compile(example);
    assert.deepEqual(
      tree.map((c) => c.name),
      ['require', 'if', 'elsif', 'elsif', 'else'],
    );
    const elsif = tree[3]!;
    assert.equal(elsif.tests[0]!.name, 'anyof');
    assert.deepEqual(
      elsif.tests[0]!.tests.map((t) => t.name),
      ['not', 'header'],
    );
    assert.equal(error('if size :over 100k { discard; } if true { stop; }'), 'ok');
    assert.equal(
      error(
        'require ["vacation", "imap4flags", "copy", "variables", "envelope", "subaddress", "relational", "comparator-i;ascii-numeric"];\n' +
          'vacation :days 7 :subject "Away" :addresses ["me@example.org"] "I am away";\n' +
          'if envelope :detail "to" "lists" { fileinto :copy :flags "\\\\Seen" "Lists"; }\n' +
          'if header :value "ge" :comparator "i;ascii-numeric" "X-Spam-Score" "5" { addflag "$Junk"; }\n' +
          'set :lower "name" "${1}";',
      ),
      '3:36 fileinto: needs require "fileinto"',
    );
  });

  const table: Array<[string, string, string]> = [
    ['an unknown command', 'keep;\nfileinot "x";', '2:1 unknown command "fileinot"'],
    ['an extension not required', 'fileinto "x";', '1:1 fileinto: needs require "fileinto"'],
    [
      'an unsupported extension',
      'require "enotify";',
      '1:9 require: the extension "enotify" is not supported',
    ],
    [
      'require after another command',
      'keep;\nrequire "fileinto";',
      '2:1 require: must come before every other command',
    ],
    ['elsif without if', 'elsif true { keep; }', '1:1 elsif: must follow if or elsif'],
    ['if without a block', 'if true;', '1:1 if: needs a block in braces'],
    ['if without a test', 'if { keep; }', '1:1 if: needs one test'],
    ['a missing semicolon', 'keep\ndiscard;', '2:1 keep: takes no test; is a ";" missing before "discard"?'],
    ['a block after a command that takes none', 'keep { discard; }', '1:1 keep: takes no block'],
    ['an unknown test', 'if sender "a" { keep; }', '1:4 unknown test "sender"'],
    [
      'two match types',
      'if header :is :contains "a" "b" { keep; }',
      '1:15 header: :contains and :is cannot be used together',
    ],
    [
      'a tag after the arguments',
      'if header "a" :is "b" { keep; }',
      '1:15 header: the tag :is must come before the other arguments',
    ],
    [
      'an unknown comparator',
      'if header :comparator "i;x" "a" "b" { keep; }',
      '1:23 header: unknown comparator "i;x"',
    ],
    [
      'too few arguments',
      'if header "a" { keep; }',
      '1:4 header: takes 2 arguments besides its tags, found 1',
    ],
    [
      'a list where one string goes',
      'redirect ["a@b", "c@d"];',
      '1:10 redirect: argument 1 must be a string',
    ],
    ['size without :over or :under', 'if size 10 { keep; }', '1:4 size: needs :over or :under'],
    [
      'a list not closed',
      'if exists ["a", "b" { keep; }',
      '1:21 expected "," or "]" in a string list, found "{"',
    ],
    ['a block not closed', 'if true { keep;', '1:16 a block is not closed with "}"'],
    ['a stray brace', 'keep; }', '1:7 a "}" without its "{"'],
    [
      'a relational match without a relation',
      'require "relational"; if header :count "x" "a" "1" { keep; }',
      '1:40 header: :count needs one of gt, ge, lt, le, eq, ne',
    ],
  ];
  for (const [name, script, want] of table) it(name, () => assert.equal(error(script), want));

  it('bounds nesting: a deep script is an error at the level it goes too deep, not a crash', () => {
    const deep = `${'if true { '.repeat(40)}keep;${' }'.repeat(40)}`;
    assert.match(error(deep), /^1:\d+ (blocks|tests) nested deeper than 32$/);
    const deepTests = `if ${'not '.repeat(10_000)}true { keep; }`;
    assert.match(error(deepTests), /tests nested deeper than 32$/);
  });

  it('takes a 100,000-command script in linear time', () => {
    const big = 'keep;\n'.repeat(100_000);
    const t = performance.now();
    assert.equal(parse(big).length, 100_000);
    assert.ok(performance.now() - t < 2000);
  });

  it('never throws anything but SieveError, for any text (fast-check)', () => {
    const pieces = fc.constantFrom(
      'if',
      'elsif',
      'else',
      'keep',
      'fileinto',
      'require',
      'header',
      ':is',
      ':comparator',
      '"x"',
      '"',
      '[',
      ']',
      '(',
      ')',
      ',',
      ';',
      '{',
      '}',
      '10K',
      'text:\n',
      '\n.\n',
      '/*',
      '*/',
      '#',
      '\n',
      ' ',
      'not',
      'anyof',
      'true',
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.array(pieces, { maxLength: 60 }).map((a) => a.join(' ')),
        ),
        (script) => {
          try {
            compile(script);
          } catch (err) {
            assert.ok(err instanceof SieveError, String(err));
            assert.ok(err.line >= 1 && err.column >= 1);
          }
        },
      ),
      { numRuns: 3000 },
    );
  });
});
