// NOTIFY's command (RFC 5465 §8) and its mailbox filters (§6): what each form asks, what is refused,
// and for any text a request or an IMAP error, nothing else.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ImapSyntaxError, ImapUserError } from '../src/errors.ts';
import { NotifySpec, readNotify } from '../src/notify.ts';
import { Cursor } from '../src/protocol/cursor.ts';

const read = (text: string) => readNotify(new Cursor([text]));
const spec = (text: string) => new NotifySpec(read(text).groups.map((g) => ({ ...g, decoded: g.names })));

describe('NOTIFY', () => {
  it('reads SET with STATUS, several groups, names, NONE and MessageNew FETCH attributes', () => {
    const r = read(
      'SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (From Subject)]) messageexpunge FlagChange)) (subtree (Lists "Work/Team") (MessageNew MessageExpunge)) (MAILBOXES Spam NONE)',
    );
    assert.equal(r.status, true);
    assert.deepEqual(
      r.groups.map((g) => [g.filter, g.names, [...g.events], g.fetch?.map((f) => f.kind) ?? null]),
      [
        ['SELECTED', [], ['MessageNew', 'MessageExpunge', 'FlagChange'], ['UID', 'section']],
        ['SUBTREE', ['Lists', 'Work/Team'], ['MessageNew', 'MessageExpunge'], null],
        ['MAILBOXES', ['Spam'], [], null],
      ],
    );
    assert.deepEqual(read('NONE'), { status: false, groups: [] });
  });

  it('matches a mailbox by the groups that take it, in order: the first naming the event, or a NONE (§6)', () => {
    const s = spec(
      'SET (SELECTED (MessageNew MessageExpunge)) (MAILBOXES Spam NONE) (SUBTREE Lists (MessageNew MessageExpunge FlagChange)) (SUBSCRIBED (MailboxName)) (PERSONAL (MessageNew MessageExpunge))',
    );
    const box = (name: string, subscribed = false) => ({ name, subscribed });
    const table: Array<[string, boolean, string, boolean, boolean]> = [
      ['Spam', false, 'MessageNew', false, false], // NONE for Spam, whatever follows
      ['Lists/ietf', false, 'FlagChange', false, true],
      ['Lists', false, 'MessageNew', false, true],
      ['Listserv', false, 'FlagChange', false, false], // not below Lists: PERSONAL, no FlagChange
      ['Work', true, 'MailboxName', false, true], // SUBSCRIBED
      ['Work', true, 'MessageNew', false, true], // SUBSCRIBED has no MessageNew: PERSONAL has
      ['Work', false, 'MessageNew', false, true], // PERSONAL
      ['INBOX', false, 'MessageNew', true, false], // the selected mailbox: SELECTED's alone
      ['Work', true, 'MailboxName', true, true], // but its name is not a message event
    ];
    for (const [name, sub, event, selected, want] of table)
      assert.equal(
        s.wants(box(name, sub), event as never, selected),
        want,
        `${name} ${sub} ${event} ${selected}`,
      );
    assert.equal(s.selected?.filter, 'SELECTED');
    assert.equal(spec('SET (PERSONAL (MailboxName))').selected, null);
    assert.equal(spec('SET (SELECTED NONE)').selected, null);
  });

  it('refuses broken requests with BAD and unsupported events with NO [BADEVENT]', () => {
    const bad = [
      'SET (SELECTED (MessageNew))',
      'SET (SELECTED (MessageExpunge FlagChange))',
      'SET (PERSONAL (FlagChange))',
      'SET (SELECTED (SubscriptionChange))',
      'SET (SELECTED NONE) (SELECTED-DELAYED NONE)',
      'SET (INBOXES (MessageNew (FLAGS) MessageExpunge))',
      'SET (SUBTREE (MessageNew MessageExpunge))',
      'SET (MAILBOXES () NONE)',
      'SET (PERSONAL ())',
      'SET (PERSONAL (Nope))',
      'SET (PERSONAL NONE',
      'SET',
      'SET STATUS',
      'SOMETIMES',
      'NONE (PERSONAL NONE)',
    ];
    for (const text of bad)
      assert.throws(
        () => read(text),
        (err: unknown) => err instanceof ImapSyntaxError,
        text,
      );
    assert.throws(
      () => read('SET (PERSONAL (MessageNew MessageExpunge MailboxMetadataChange))'),
      (err: unknown) =>
        err instanceof ImapUserError &&
        err.code === 'BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)',
    );
  });

  it('for any text: a request or an IMAP error (property)', () => {
    const words = fc.constantFrom(
      'SET',
      'NONE',
      'STATUS',
      '(',
      ')',
      ' ',
      'SELECTED',
      'PERSONAL',
      'SUBTREE',
      'MAILBOXES',
      'MessageNew',
      'MessageExpunge',
      'FlagChange',
      'MailboxName',
      'UID',
      '"x"',
      'INBOX',
    );
    fc.assert(
      fc.property(fc.array(fc.oneof(words, fc.string({ maxLength: 4 })), { maxLength: 24 }), (parts) => {
        try {
          read(parts.join(''));
        } catch (err) {
          assert.ok(err instanceof ImapSyntaxError || err instanceof ImapUserError, String(err));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
