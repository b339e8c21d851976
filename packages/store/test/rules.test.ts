import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyFlagOperation,
  checkQueueRecipients,
  formatReply,
  isStoreError,
  makeReply,
  normalizeAddress,
  normalizeAliasSource,
  normalizeDomain,
  normalizeMailboxName,
  parseReply,
  readReply,
  splitPlus,
} from '../src/index.ts';

describe('address rules', () => {
  const good: Array<[string, string]> = [
    ['Bob@Example.ORG', 'bob@example.org'],
    ['first.last+tag@example.org', 'first.last+tag@example.org'],
    ["o'neil@example.org", "o'neil@example.org"],
    ['jörg@bücher.example', 'jörg@xn--bcher-kva.example'],
    ['a@xn--bcher-kva.example', 'a@xn--bcher-kva.example'],
  ];
  for (const [input, want] of good) it(`accepts ${input}`, () => assert.equal(normalizeAddress(input), want));

  const bad = [
    'plain',
    '@example.org',
    'a@',
    'a b@example.org',
    '"a@ext"@example.org',
    'a%b@ext',
    '@local:a@ext.org',
    '.a@example.org',
    'a..b@example.org',
    'a.@example.org',
    'a@-bad.org',
    'a@bad_.org',
    'a@1.2.3.4',
    'a@exa mple.org',
    'a\u0000@example.org',
    `${'x'.repeat(65)}@example.org`,
    'Jo\u0308rg@example.org', // not NFC: o + combining diaeresis
  ];
  for (const input of bad) {
    it(`refuses ${JSON.stringify(input)}`, () =>
      assert.throws(
        () => normalizeAddress(input),
        (e: unknown) => isStoreError(e, 'invalid'),
      ));
  }

  it('canonicalises domains and catch-alls, and splits plus tags', () => {
    assert.equal(normalizeDomain('MAIL.Example.org'), 'mail.example.org');
    assert.throws(
      () => normalizeDomain('a..b'),
      (e: unknown) => isStoreError(e, 'invalid'),
    );
    assert.deepEqual(normalizeAliasSource('@Example.org'), {
      address: '@example.org',
      domain: 'example.org',
      catchAll: true,
    });
    assert.deepEqual(splitPlus('bob+lists+x@example.org'), { base: 'bob@example.org', tag: 'lists+x' });
    assert.equal(splitPlus('+x@example.org'), null);
    assert.equal(splitPlus('bob@example.org'), null);
  });
});

describe('mailbox names', () => {
  it('normalises INBOX and accepts Unicode names', () => {
    assert.equal(normalizeMailboxName('inbox'), 'INBOX');
    assert.equal(normalizeMailboxName('Inbox/Sub'), 'INBOX/Sub');
    assert.equal(normalizeMailboxName('Entwürfe/2026'), 'Entwürfe/2026');
    assert.equal(normalizeMailboxName('INBOXES'), 'INBOXES');
  });
  for (const bad of ['', '/', 'a//b', '..', 'a/./b', ' a', 'a\u0007', 'x*', 'A\u0301']) {
    it(`refuses ${JSON.stringify(bad)}`, () =>
      assert.throws(
        () => normalizeMailboxName(bad),
        (e: unknown) => isStoreError(e, 'invalid'),
      ));
  }
});

describe('flag operations', () => {
  const table: Array<[string[], 'add' | 'remove' | 'set', string[], string[] | null]> = [
    [[], 'add', ['\\seen'], ['\\Seen']],
    [['\\Seen'], 'add', ['\\SEEN'], null],
    [['\\Seen', 'Work'], 'remove', ['work'], ['\\Seen']],
    [['\\Seen'], 'set', ['\\Seen'], null],
    [['a', 'b'], 'set', ['b', 'a'], null],
    [['a'], 'set', [], []],
  ];
  for (const [cur, op, flags, want] of table) {
    it(`${JSON.stringify(cur)} ${op} ${JSON.stringify(flags)}`, () =>
      assert.deepEqual(applyFlagOperation(cur, op, flags), want));
  }
  it('refuses unknown system flags and bad keywords', () => {
    assert.throws(
      () => applyFlagOperation([], 'add', ['\\Recent']),
      (e: unknown) => isStoreError(e, 'invalid'),
    );
    assert.throws(
      () => applyFlagOperation([], 'add', ['a b']),
      (e: unknown) => isStoreError(e, 'invalid'),
    );
  });
});

describe('delivery replies', () => {
  const table: Array<[string, [number, string, string]]> = [
    ['550 5.1.1 <a@b.org> no such user', [550, '5.1.1', '<a@b.org> no such user']],
    ['250 2.0.0 Ok: queued as 12', [250, '2.0.0', 'Ok: queued as 12']],
    ['421 too busy', [421, '4.0.0', 'too busy']],
    ['250', [250, '2.0.0', '']],
    ['250-first line 250 2.1.5 second', [250, '2.0.0', 'first line 250 2.1.5 second']],
    ['452 4.2.2\r\n mailbox  full', [452, '4.2.2', 'mailbox full']],
    ['connection reset', [451, '4.3.0', 'connection reset']],
  ];
  for (const [line, [code, enhanced, text]] of table)
    it(`reads ${JSON.stringify(line)}`, () => assert.deepEqual(parseReply(line), { code, enhanced, text }));

  it('formats what it reads back to the line', () => {
    assert.equal(formatReply(parseReply('550 5.1.1 no such user')), '550 5.1.1 no such user');
    assert.equal(formatReply(makeReply(250, '2.0.0', '')), '250 2.0.0');
  });

  it('reads a stored reply in either form, and refuses anything else', () => {
    assert.deepEqual(readReply('451 4.4.1 down'), { code: 451, enhanced: '4.4.1', text: 'down' });
    assert.deepEqual(readReply({ code: 250, enhanced: '2.0.0', text: 'ok' }), makeReply(250, '2.0.0', 'ok'));
    assert.equal(readReply(undefined), undefined);
    assert.throws(() => readReply({ code: '250' }));
  });

  it('turns the line replies of rows an older version wrote into fields when the row is read', () => {
    const [r] = checkQueueRecipients([
      {
        address: 'a@b.org',
        state: 'pending',
        attempts: 1,
        lastReply: '451 4.4.1 mail delivery agent unavailable',
      },
    ]);
    assert.deepEqual(r!.lastReply, { code: 451, enhanced: '4.4.1', text: 'mail delivery agent unavailable' });
  });
});
