import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyFlagOperation,
  isStoreError,
  normalizeAddress,
  normalizeAliasSource,
  normalizeDomain,
  normalizeMailboxName,
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
