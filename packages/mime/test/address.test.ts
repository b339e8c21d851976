import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { type AddressEntry, MAX_ADDRESSES, parseAddressList, parseHeaderDate } from '../src/index.ts';

const cases: Array<[string, AddressEntry[]]> = [
  ['ann@example.org', [{ name: '', address: 'ann@example.org' }]],
  ['"Ann Example" <ann@example.org>', [{ name: 'Ann Example', address: 'ann@example.org' }]],
  ['Ann Example <ann@example.org>', [{ name: 'Ann Example', address: 'ann@example.org' }]],
  // Obsolete phrase with a "." (RFC 5322 §4.1): a display name, not the start of an address.
  ['John Q. Public <john@x.org>', [{ name: 'John Q. Public', address: 'john@x.org' }]],
  [
    'Bob B. <bob@x.org>, c@x.org',
    [
      { name: 'Bob B.', address: 'bob@x.org' },
      { name: '', address: 'c@x.org' },
    ],
  ],
  ['=?utf-8?q?J=C3=BCrgen?= <j@x.org>', [{ name: '=?utf-8?q?J=C3=BCrgen?=', address: 'j@x.org' }]],
  [
    'a@x.org, "B, the second" <b@x.org>',
    [
      { name: '', address: 'a@x.org' },
      { name: 'B, the second', address: 'b@x.org' },
    ],
  ],
  // Comments anywhere, as RFC 5322 §3.2.2 allows, are not part of the address.
  ['<user (comment)@ (comment) domain.org>', [{ name: '', address: 'user@domain.org' }]],
  ['user (Ann)@domain.org', [{ name: '', address: 'user@domain.org' }]],
  // Obsolete: the comment after the address names it.
  ['ann@example.org (Ann Example)', [{ name: 'Ann Example', address: 'ann@example.org' }]],
  ['"quoted local"@x.org', [{ name: '', address: 'quoted local@x.org' }]],
  ['Ann <ann@[192.0.2.1]>', [{ name: 'Ann', address: 'ann@[192.0.2.1]' }]],
  // Obsolete source route (RFC 5322 §4.4).
  ['<@route1,@route2:user@domain.org>', [{ name: '', address: 'user@domain.org', route: '@route1,@route2' }]],
  // Groups, empty or not; a group is not an address.
  ['group2: (foo) ;', [{ name: 'group2', group: [] }]],
  ['undisclosed-recipients:;', [{ name: 'undisclosed-recipients', group: [] }]],
  [
    'Team: c@x.org, "D" <d@x.org>;, e@x.org',
    [
      {
        name: 'Team',
        group: [
          { name: '', address: 'c@x.org' },
          { name: 'D', address: 'd@x.org' },
        ],
      },
      { name: '', address: 'e@x.org' },
    ],
  ],
  ['', []],
  [' , ,', []],
  ['just-a-name', [{ name: '', address: 'just-a-name' }]],
  ['<>', [{ name: '', address: '' }]],
];

describe('parseAddressList', () => {
  for (const [input, expected] of cases)
    it(`parses ${JSON.stringify(input)}`, () => assert.deepEqual(parseAddressList(input), expected));

  it('is linear: 100,000 addresses in one field take about what 10,000 take, times ten, and keep the first MAX_ADDRESSES', () => {
    const field = (n: number) =>
      Array.from({ length: n }, (_, i) => `"User ${i}" <u${i}@example.org>`).join(', ');
    const time = (s: string) => {
      const t = process.hrtime.bigint();
      const out = parseAddressList(s, Number.MAX_SAFE_INTEGER);
      return { ms: Number(process.hrtime.bigint() - t) / 1e6, n: out.length };
    };
    time(field(1000));
    const small = time(field(10_000));
    const big = time(field(100_000));
    assert.equal(big.n, 100_000);
    // Quadratic work would be 100 times slower; allow a noisy machine a factor of 30.
    assert.ok(big.ms < small.ms * 30 + 50, `10,000: ${small.ms} ms, 100,000: ${big.ms} ms`);
    const bounded = parseAddressList(field(100_000));
    assert.equal(bounded.length, MAX_ADDRESSES);
    assert.deepEqual(bounded[MAX_ADDRESSES - 1], {
      name: `User ${MAX_ADDRESSES - 1}`,
      address: `u${MAX_ADDRESSES - 1}@example.org`,
    });
  });

  it('never throws and never returns more than the bound, whatever the input (property)', () => {
    const piece = fc.constantFrom(
      'a',
      '@',
      '<',
      '>',
      ',',
      ';',
      ':',
      '"',
      '\\',
      '(',
      ')',
      '[',
      ']',
      '.',
      ' ',
      'x.org',
      '=?utf-8?q?x?=',
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(piece, fc.string()), { maxLength: 60 }), (parts) => {
        const out = parseAddressList(parts.join(''), 5);
        let n = 0;
        for (const e of out) n += 'group' in e ? e.group.length : 1;
        assert.ok(n <= 5);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('parseHeaderDate', () => {
  const table: Array<[string, [number, number, number] | null, string?]> = [
    ['Mon, 23 Nov 2026 10:00:00 +0000', [2026, 11, 23], '2026-11-23T10:00:00.000Z'],
    // The day as written, whatever the zone: 23:30 -0500 is the 24th in UTC, but was sent on the 23rd.
    ['Mon, 23 Nov 2026 23:30:00 -0500', [2026, 11, 23], '2026-11-24T04:30:00.000Z'],
    ['23 Nov 2026 01:00 +1300', [2026, 11, 23], '2026-11-22T12:00:00.000Z'],
    ['Tue, 1 Dec 26 08:00:00 EST (Eastern)', [2026, 12, 1], '2026-12-01T13:00:00.000Z'],
    ['Fri, 31 Dec 99 23:59:59 GMT', [1999, 12, 31]],
    ['yesterday', null],
    ['', null],
    ['Mon, 99 Nov 2026 10:00:00 +0000', null],
  ];
  for (const [input, ymd, iso] of table)
    it(`reads ${JSON.stringify(input)}`, () => {
      const d = parseHeaderDate(input);
      if (ymd === null) return assert.equal(d, null);
      assert.ok(d);
      assert.deepEqual([d.year, d.month, d.day], ymd);
      if (iso) assert.equal(new Date(d.time).toISOString(), iso);
    });

  it('never throws (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => void parseHeaderDate(s)),
      { numRuns: 2000 },
    );
  });
});
