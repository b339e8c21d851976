import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeMutf7, encodeMutf7, MailboxNameError } from '../src/index.ts';

describe('modified UTF-7 mailbox names', () => {
  // Examples from RFC 3501 §5.1.3 and what Thunderbird and Outlook send.
  const pairs: Array<[string, string]> = [
    ['INBOX', 'INBOX'],
    ['~peter/mail/台北/日本語', '~peter/mail/&U,BTFw-/&ZeVnLIqe-'],
    ['Entwürfe', 'Entw&APw-rfe'],
    ['Gesendete Elemente', 'Gesendete Elemente'],
    ['A&B', 'A&-B'],
    ['Отправленные', '&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-'],
    ['Emoji 😀', 'Emoji &2D3eAA-'],
  ];
  for (const [name, wire] of pairs) {
    it(`${name} <-> ${wire}`, () => {
      assert.equal(encodeMutf7(name), wire);
      assert.equal(decodeMutf7(wire), name);
    });
  }
  const bad = [
    '&',
    '&Jjo',
    '&AGE-',
    '&U,BTFw-&ZeVnLIqe-',
    'Entw\u00fcrfe',
    '&Jj=-',
    '&2D0-',
    'a\u0001b',
    '&A-',
  ];
  for (const wire of bad) {
    it(`refuses ${JSON.stringify(wire)}`, () => assert.throws(() => decodeMutf7(wire), MailboxNameError));
  }
});
