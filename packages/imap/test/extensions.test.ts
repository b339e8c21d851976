// IMAP extensions of the IMAP4rev2 issue against the real server, over loopback with exact bytes: ESEARCH
// (RFC 4731), SEARCHRES (RFC 5182) and WITHIN (RFC 5032); each case an example or an edge of its RFC.
// One exchange with python3's imaplib, a real client sending its own bytes.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parseMessage } from '@mailwerk/mime';
import {
  applyChanges,
  eventually,
  PASSWORD,
  RawImap,
  type Rig,
  rig,
  sample,
  storeMessage,
} from './harness.ts';

/** An imapflow logger that keeps what it logs at debug level (each command it sends) in `said`. */
const saying = (said: string[]) => ({
  debug: (o: { msg?: string }) => {
    if (typeof o.msg === 'string') said.push(o.msg);
  },
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
});

const run = promisify(execFile);
const DAY = 86_400_000;

describe('IMAP extensions: ESEARCH, SEARCHRES, WITHIN', () => {
  let r: Rig;
  // UIDs 1..8; 2 and 5 are expunged below, so sequence numbers and UIDs differ: seq 1..6 = UID 1,3,4,6,7,8.
  before(async () => {
    r = await rig();
    const flagged = new Set([3, 4, 7]);
    for (let i = 1; i <= 8; i++)
      await storeMessage(r, 'bob', 'INBOX', sample(`message ${i}`), {
        flags: flagged.has(i) ? ['\\Flagged'] : [],
        // The first four arrived three days ago, the others now.
        internalDate: new Date(Date.now() - (i <= 4 ? 3 * DAY : 0)),
      });
    const c = await signedIn();
    await c.cmd('SELECT INBOX');
    await c.cmd('UID STORE 2,5 +FLAGS (\\Deleted)');
    assert.match(await c.cmd('EXPUNGE'), /OK/);
    c.close();
  });
  after(() => r.close());

  async function signedIn(): Promise<RawImap> {
    const c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    return c;
  }
  /** The untagged lines of a reply, without the tagged one. */
  const untagged = (out: string) => out.split('\r\n').filter((l) => l.startsWith('* '));

  it('advertises ESEARCH, SEARCHRES and WITHIN once signed in', async () => {
    const c = await signedIn();
    const caps = await c.cmd('CAPABILITY');
    for (const cap of ['ESEARCH', 'SEARCHRES', 'WITHIN']) assert.match(caps, new RegExp(` ${cap}[ \\r]`));
    c.close();
  });

  it('answers SEARCH RETURN with MIN, MAX, ALL and COUNT in one ESEARCH response (RFC 4731 §3.1)', async () => {
    const c = await signedIn();
    await c.cmd('SELECT INBOX');
    // Flagged: UIDs 3, 4, 7 = sequence numbers 2, 3, 5.
    assert.deepEqual(untagged(await c.cmd('SEARCH RETURN (MIN COUNT) FLAGGED')), [
      '* ESEARCH (TAG "t3") MIN 2 COUNT 3',
    ]);
    assert.deepEqual(untagged(await c.cmd('UID SEARCH RETURN (MIN MAX) FLAGGED')), [
      '* ESEARCH (TAG "t4") UID MIN 3 MAX 7',
    ]);
    assert.deepEqual(untagged(await c.cmd('UID SEARCH RETURN (ALL) UNFLAGGED')), [
      '* ESEARCH (TAG "t5") UID ALL 1,6,8',
    ]);
    // An empty list is ALL (§3.1); ranges are written compactly.
    assert.deepEqual(untagged(await c.cmd('SEARCH RETURN () ALL')), ['* ESEARCH (TAG "t6") ALL 1:6']);
    // Nothing found: no MIN, MAX or ALL; COUNT 0.
    assert.deepEqual(untagged(await c.cmd('SEARCH RETURN (MIN MAX ALL) SUBJECT "no such"')), [
      '* ESEARCH (TAG "t7")',
    ]);
    assert.deepEqual(untagged(await c.cmd('SEARCH RETURN (COUNT) SUBJECT "no such"')), [
      '* ESEARCH (TAG "t8") COUNT 0',
    ]);
    // With CONDSTORE's MODSEQ key: the highest mod-sequence of what is returned (RFC 7162 §3.1.5).
    // The first use of MODSEQ turns CONDSTORE on: HIGHESTMODSEQ is said first (RFC 7162 §3.1).
    const [said, modseq] = untagged(await c.cmd('SEARCH RETURN (COUNT) MODSEQ 1')) as [string, string];
    assert.match(said, /^\* OK \[HIGHESTMODSEQ \d+\]/);
    assert.match(modseq, /^\* ESEARCH \(TAG "t9"\) COUNT 6 MODSEQ \d+$/);
    // PARTIAL (RFC 9394): a window of the matches; from the end with negative positions.
    assert.match(
      await c.cmd('UID SEARCH RETURN (PARTIAL 2:3) ALL'),
      /^\* ESEARCH \(TAG "t10"\) UID PARTIAL \(2:3 3:4\)\r$/m,
    );
    assert.match(
      await c.cmd('SEARCH RETURN (PARTIAL -1:-2 COUNT) ALL'),
      /^\* ESEARCH \(TAG "t11"\) PARTIAL \(-1:-2 5:6\) COUNT 6\r$/m,
    );
    assert.match(await c.cmd('SEARCH RETURN (PARTIAL 1:2 ALL) ALL'), /t12 BAD/);
    assert.match(await c.cmd('SEARCH RETURN (PARTIAL 1:-2) ALL'), /t13 BAD/);
    assert.match(await c.cmd('SEARCH RETURN (PARTIAL 0:2) ALL'), /t14 BAD/);
    assert.match(await c.cmd('SEARCH RETURN (FIRST) ALL'), /t15 BAD .*return option/);
    assert.match(await c.cmd('SEARCH RETURN ALL'), /t16 BAD/);
    // Without RETURN, SEARCH answers as RFC 3501 does.
    assert.deepEqual(untagged(await c.cmd('SEARCH FLAGGED')), ['* SEARCH 2 3 5']);
    c.close();
  });

  it('saves a result with RETURN (SAVE) and takes $ in FETCH, STORE, COPY, SEARCH and UID commands (RFC 5182)', async () => {
    const c = await signedIn();
    await c.cmd('SELECT INBOX');
    // $ before any SAVE names nothing.
    assert.deepEqual(untagged(await c.cmd('FETCH $ (UID)')), []);
    // SAVE alone: no ESEARCH and no SEARCH response (§2.4).
    assert.deepEqual(untagged(await c.cmd('UID SEARCH RETURN (SAVE) FLAGGED')), []);
    assert.deepEqual(untagged(await c.cmd('FETCH $ (UID)')), [
      '* 2 FETCH (UID 3)',
      '* 3 FETCH (UID 4)',
      '* 5 FETCH (UID 7)',
    ]);
    assert.deepEqual(untagged(await c.cmd('UID FETCH $ (FLAGS)')), [
      '* 2 FETCH (UID 3 FLAGS (\\Flagged))',
      '* 3 FETCH (UID 4 FLAGS (\\Flagged))',
      '* 5 FETCH (UID 7 FLAGS (\\Flagged))',
    ]);
    assert.deepEqual(untagged(await c.cmd('STORE $ +FLAGS.SILENT (\\Seen)')), []);
    assert.deepEqual(untagged(await c.cmd('SEARCH SEEN')), ['* SEARCH 2 3 5']);
    // $ as a search key, and UIDs of $ after a SEARCH in sequence numbers.
    assert.deepEqual(untagged(await c.cmd('SEARCH RETURN (SAVE) 1:3')), []);
    assert.deepEqual(untagged(await c.cmd('UID SEARCH $ FLAGGED')), ['* SEARCH 3 4']);
    assert.match(await c.cmd('COPY $ Archive'), /OK \[COPYUID \d+ 1,3:4 1:3\]/);
    // SAVE with MIN and MAX only keeps those two (§2.4); with COUNT, all of them.
    await c.cmd('SEARCH RETURN (SAVE MIN MAX) ALL');
    assert.deepEqual(untagged(await c.cmd('UID FETCH $ (UID)')), ['* 1 FETCH (UID 1)', '* 6 FETCH (UID 8)']);
    assert.deepEqual(untagged(await c.cmd('SEARCH RETURN (SAVE MIN COUNT) FLAGGED')), [
      '* ESEARCH (TAG "t14") MIN 2 COUNT 3',
    ]);
    assert.deepEqual(untagged(await c.cmd('UID SEARCH UID $')), ['* SEARCH 3 4 7']);
    // $ is a whole sequence set, never one element of a list.
    assert.match(await c.cmd('FETCH $,1 (UID)'), /t16 BAD/);
    // A SAVE that fails leaves $ empty (§2.4), not what it held.
    assert.match(await c.cmd('SEARCH RETURN (SAVE) NOSUCHKEY'), /t17 BAD/);
    assert.deepEqual(untagged(await c.cmd('FETCH $ (UID)')), []);
    c.close();
  });

  it('drops expunged messages from $, and SELECT empties it', async () => {
    const c = await signedIn();
    await c.cmd('SELECT Archive');
    await c.cmd('UID SEARCH RETURN (SAVE) ALL');
    assert.equal(untagged(await c.cmd('FETCH $ (UID)')).length, 3);
    await c.cmd('UID STORE 1 +FLAGS.SILENT (\\Deleted)');
    await c.cmd('EXPUNGE');
    assert.deepEqual(untagged(await c.cmd('UID FETCH $ (UID)')), ['* 1 FETCH (UID 2)', '* 2 FETCH (UID 3)']);
    await c.cmd('SELECT Archive');
    assert.deepEqual(untagged(await c.cmd('FETCH $ (UID)')), []);
    c.close();
  });

  it('finds messages by age with OLDER and YOUNGER, in seconds from now (RFC 5032)', async () => {
    const c = await signedIn();
    await c.cmd('SELECT INBOX');
    // UIDs 1, 3, 4 arrived three days ago (seq 1, 2, 3); 6, 7, 8 now.
    assert.deepEqual(untagged(await c.cmd('UID SEARCH OLDER 86400')), ['* SEARCH 1 3 4']);
    assert.deepEqual(untagged(await c.cmd('UID SEARCH YOUNGER 86400')), ['* SEARCH 6 7 8']);
    assert.deepEqual(untagged(await c.cmd('SEARCH YOUNGER 864000 FLAGGED')), ['* SEARCH 2 3 5']);
    assert.deepEqual(untagged(await c.cmd('SEARCH RETURN (COUNT) NOT YOUNGER 3600')), [
      '* ESEARCH (TAG "t6") COUNT 3',
    ]);
    assert.match(await c.cmd('SEARCH OLDER 0'), /t7 BAD/);
    assert.match(await c.cmd('SEARCH YOUNGER -5'), /t8 BAD/);
    c.close();
  });

  it('python3 imaplib gets the ESEARCH response of its own command', async () => {
    const script = `
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL('127.0.0.1', int(sys.argv[1]), ssl_context=ctx)
m.login('bob@example.org', sys.argv[2])
m.select('INBOX', readonly=True)
typ, data = m._simple_command('UID', 'SEARCH', 'RETURN', '(MIN MAX COUNT)', 'FLAGGED')
print(typ, m._untagged_response(typ, data, 'ESEARCH')[1][0].decode())
m.logout()
`;
    const { stdout } = await run('python3', ['-c', script, String(r.tlsPort), PASSWORD], { timeout: 30_000 });
    assert.match(stdout, /^OK \(TAG "[A-Z0-9]+"\) UID MIN 3 MAX 7 COUNT 3$/m);
  });
});

describe('IMAP extensions: LIST-EXTENDED and LIST-STATUS', () => {
  let r: Rig;
  let c: RawImap;
  before(async () => {
    r = await rig();
    c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    // RFC 5258 §5's fruit: Fruit and Fruit/Apple not subscribed, Fruit/Peach subscribed; Tofu subscribed.
    for (const name of ['Fruit', 'Fruit/Apple', 'Fruit/Peach', 'Tofu'])
      assert.match(await c.cmd(`CREATE ${name}`), /OK/);
    for (const name of ['Fruit', 'Fruit/Apple']) await c.cmd(`UNSUBSCRIBE ${name}`);
    for (const name of ['Fruit/Peach', 'Tofu']) await c.cmd(`SUBSCRIBE ${name}`);
    await c.cmd('APPEND Tofu (\\Seen) {11}\r\nSubject: x\r\n');
  });
  after(async () => {
    c?.close();
    await r?.close();
  });
  const lines = (out: string, kind = 'LIST') => out.split('\r\n').filter((l) => l.startsWith(`* ${kind} `));

  it('advertises LIST-EXTENDED and LIST-STATUS', async () => {
    assert.match(await c.cmd('CAPABILITY'), / LIST-EXTENDED LIST-STATUS/);
  });

  it('lists only subscribed mailboxes with SUBSCRIBED, marked \\Subscribed (RFC 5258 §3.1)', async () => {
    const out = lines(await c.cmd('LIST (SUBSCRIBED) "" "*"'));
    assert.ok(out.includes('* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Peach"'), out.join('\n'));
    assert.ok(out.includes('* LIST (\\HasNoChildren \\Subscribed) "/" "Tofu"'), out.join('\n'));
    assert.ok(!out.some((l) => / "Fruit"$| "Fruit\/Apple"$/.test(l)), out.join('\n'));
  });

  it('keeps subscriptions to names without a mailbox: after DELETE, and made by SUBSCRIBE (RFC 3501 §6.3.6, RFC 5258 §3)', async () => {
    assert.match(await c.cmd('CREATE Temp'), /OK/);
    // CREATE does not subscribe (RFC 3501 §6.3.3): the client does.
    assert.doesNotMatch(await c.cmd('LSUB "" Temp'), /\* LSUB/);
    assert.match(await c.cmd('SUBSCRIBE Temp'), /OK/);
    assert.match(await c.cmd('DELETE Temp'), /OK/);
    assert.match(await c.cmd('SUBSCRIBE Later/Stuff'), /OK/);
    const sub = lines(await c.cmd('LIST (SUBSCRIBED) "" "*"'));
    assert.ok(sub.includes('* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Temp"'), sub.join('\n'));
    assert.ok(
      sub.includes('* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Later/Stuff"'),
      sub.join('\n'),
    );
    assert.deepEqual(lines(await c.cmd('LSUB "" Temp'), 'LSUB'), ['* LSUB (\\Noselect) "/" "Temp"']);
    // A plain LIST names mailboxes only.
    assert.doesNotMatch(await c.cmd('LIST "" "*"'), /Temp|Later/);
    // Made again: subscribed already.
    assert.match(await c.cmd('CREATE Temp'), /OK/);
    assert.deepEqual(lines(await c.cmd('LSUB "" Temp'), 'LSUB'), ['* LSUB () "/" "Temp"']);
    assert.match(await c.cmd('UNSUBSCRIBE Later/Stuff'), /OK/);
    assert.match(await c.cmd('UNSUBSCRIBE Later/Stuff'), /NO \[NONEXISTENT\]/);
    assert.match(await c.cmd('UNSUBSCRIBE Temp'), /OK/);
    assert.match(await c.cmd('DELETE Temp'), /OK/);
    assert.doesNotMatch(await c.cmd('LIST (SUBSCRIBED) "" "*"'), /Temp|Later/);
  });

  it('names a parent whose child is subscribed with CHILDINFO under RECURSIVEMATCH, and refuses RECURSIVEMATCH alone', async () => {
    const out = lines(await c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"'));
    assert.ok(
      out.includes('* LIST (\\HasChildren) "/" "Fruit" ("CHILDINFO" ("SUBSCRIBED"))'),
      out.join('\n'),
    );
    assert.ok(out.includes('* LIST (\\HasNoChildren \\Subscribed) "/" "Tofu"'));
    // With "*" the child matches the pattern itself: no CHILDINFO for its parent, which is not listed.
    const all = lines(await c.cmd('LIST (SUBSCRIBED RECURSIVEMATCH) "" "*"'));
    assert.ok(!all.some((l) => /CHILDINFO| "Fruit"$/.test(l)), all.join('\n'));
    assert.match(await c.cmd('LIST (RECURSIVEMATCH) "" "%"'), /BAD RECURSIVEMATCH needs/);
    assert.match(await c.cmd('LIST (REMOTE RECURSIVEMATCH) "" "%"'), /BAD/);
  });

  it('takes several patterns, the return options SUBSCRIBED, CHILDREN and SPECIAL-USE, and the SPECIAL-USE selection', async () => {
    const many = lines(await c.cmd('LIST "" ("INBOX" "Fruit/%") RETURN (SUBSCRIBED CHILDREN)'));
    assert.deepEqual(many, [
      '* LIST (\\HasNoChildren \\Subscribed) "/" INBOX',
      '* LIST (\\HasNoChildren) "/" "Fruit/Apple"',
      '* LIST (\\HasNoChildren \\Subscribed) "/" "Fruit/Peach"',
    ]);
    const special = lines(await c.cmd('LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)'));
    assert.ok(special.length >= 4, special.join('\n'));
    assert.ok(
      special.every((l) => /\\(Sent|Drafts|Trash|Junk|Archive)/.test(l)),
      special.join('\n'),
    );
    assert.match(await c.cmd('LIST "" "%" RETURN (BOGUS)'), /BAD Unknown LIST return option/);
    assert.match(await c.cmd('LIST (BOGUS) "" "%"'), /BAD Unknown LIST selection option/);
    assert.match(await c.cmd('LIST "" () '), /BAD/);
  });

  it('creates a mailbox for a special use with CREATE … (USE (…)) and refuses what it cannot be (RFC 6154 §3)', async () => {
    assert.match(await c.cmd('CAPABILITY'), / CREATE-SPECIAL-USE/);
    assert.match(await c.cmd('CREATE "Old Sent" (USE (\\Sent))'), /OK/);
    assert.deepEqual(lines(await c.cmd('LIST (SPECIAL-USE) "" "Old Sent"')), [
      '* LIST (\\HasNoChildren \\Sent) "/" "Old Sent"',
    ]);
    assert.match(await c.cmd('CREATE Both (USE (\\Sent \\Archive))'), /NO \[USE\]/);
    assert.match(await c.cmd('CREATE Odd (USE (\\Important))'), /NO \[USE\]/);
    assert.match(await c.cmd('CREATE Odd (COLOR (red))'), /BAD/);
    assert.deepEqual(lines(await c.cmd('LIST "" "Both"')), []);
    assert.deepEqual(lines(await c.cmd('LIST "" "Odd"')), []);
  });

  it('returns STATUS after each LIST line with RETURN (STATUS …) (RFC 5819)', async () => {
    const out = await c.cmd('LIST "" "Tofu" RETURN (STATUS (MESSAGES UNSEEN SIZE))');
    assert.match(
      out,
      /^\* LIST \(\\HasNoChildren\) "\/" "Tofu"\r\n\* STATUS "Tofu" \(MESSAGES 1 UNSEEN 0 SIZE 11\)\r\n/,
    );
    assert.match(await c.cmd('LIST "" "Tofu" RETURN (STATUS (BOGUS))'), /BAD Unknown STATUS item/);
    assert.match(await c.cmd('LIST "" "Tofu" RETURN (STATUS ())'), /BAD/);
  });

  it('imapflow lists with the extended syntax and takes the STATUS it returns', async () => {
    const said: string[] = [];
    const client = await r.client('bob', { logger: saying(said) });
    try {
      const list = await client.list({ statusQuery: { messages: true, unseen: true } });
      // One LIST with the status in it, no LSUB and no STATUS per mailbox.
      assert.deepEqual(
        said.filter((l) => /^\d+ (LIST|LSUB|STATUS)\b/.test(l)).map((l) => l.replace(/^\d+ /, '')),
        ['LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN) SPECIAL-USE CHILDREN SUBSCRIBED)'],
      );
      const tofu = list.find((m) => m.path === 'Tofu')!;
      assert.equal(tofu.subscribed, true);
      assert.deepEqual({ ...tofu.status, path: undefined }, { path: undefined, messages: 1, unseen: 0 });
      assert.ok(!list.find((m) => m.path === 'Fruit/Apple')!.subscribed);
      // Two mailboxes are \Sent by now ("Old Sent" too): imapflow names one its Sent; both carry the flag.
      assert.ok(list.find((m) => m.path === 'Sent')!.flags.has('\\Sent'));
    } finally {
      await client.logout();
    }
  });
});

describe('IMAP extensions: SORT, SORT=DISPLAY and THREAD', () => {
  let r: Rig;
  let c: RawImap;
  const sizes: number[] = [];
  const mail = (h: Record<string, string>) =>
    Buffer.from(
      `${Object.entries(h)
        .map(([k, v]) => `${k}: ${v}\r\n`)
        .join('')}\r\nbody\r\n`,
    );
  // A fixed mailbox: the answers below are worked out by hand from RFC 5256 and RFC 5957.
  const rows: Array<Record<string, string>> = [
    {
      From: '"Zoe" <zoe@a.example>',
      To: 'bob@example.org',
      Subject: 'Plans',
      Date: 'Mon, 2 Mar 2026 10:00:00 +0000',
      'Message-ID': '<p1@a>',
    },
    {
      From: 'adam@b.example',
      To: '"Bob B" <bob@example.org>',
      Cc: 'carl@c.example',
      Subject: 'Re: Plans',
      Date: 'Mon, 2 Mar 2026 12:00:00 +0200',
      'Message-ID': '<p2@b>',
      References: '<p1@a>',
    },
    {
      From: '=?UTF-8?Q?=C3=89mile?= <emile@c.example>',
      To: 'ann@example.org',
      Subject: '[team] Budget',
      Date: 'Sun, 1 Mar 2026 09:00:00 +0000',
      'Message-ID': '<b1@c>',
    },
    {
      From: 'Bert <bert@d.example>',
      To: 'bob@example.org',
      Cc: 'alice@e.example',
      Subject: 'RE: plans',
      Date: 'Tue, 3 Mar 2026 08:00:00 +0000',
      'Message-ID': '<p3@d>',
      'In-Reply-To': '<p2@b>',
    },
    { From: 'nodate@f.example', Subject: 'Fwd: Budget', 'Message-ID': '<b2@f>' },
  ];
  /** The rows above into INBOX; `older`: their structures without the sort fields, as stored before they were kept. */
  const fill = async (into: Rig, older = false) => {
    for (const [i, h] of rows.entries()) {
      const raw = mail(h);
      const { sort: _, ...withoutSort } = parseMessage(raw);
      // Arrival: in order, a minute apart, after every Date: above.
      await storeMessage(into, 'bob', 'INBOX', raw, {
        internalDate: new Date(Date.UTC(2026, 2, 10, 0, i)),
        ...(older ? { structure: withoutSort } : {}),
      });
    }
  };
  before(async () => {
    r = await rig();
    sizes.push(...rows.map((h) => mail(h).length));
    await fill(r);
    c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    await c.cmd('SELECT INBOX');
  });
  after(async () => {
    c?.close();
    await r?.close();
  });
  const one = async (command: string, kind: string) => {
    const out = await c.cmd(command);
    const line = out.split('\r\n').find((l) => l.startsWith(`* ${kind}`));
    assert.ok(line, out);
    return line.slice(2 + kind.length).trim();
  };

  it('advertises SORT, SORT=DISPLAY and both THREAD algorithms', async () => {
    assert.match(
      await c.cmd('CAPABILITY'),
      / SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES/,
    );
  });

  it('sorts by every key, with REVERSE and ties by sequence number (RFC 5256 §3, RFC 5957)', async () => {
    const table: Array<[string, string]> = [
      ['ARRIVAL', '1 2 3 4 5'],
      ['REVERSE ARRIVAL', '5 4 3 2 1'],
      // 2 was written at 12:00 +0200, 10:00 UTC: the same instant as 1; 5 has no Date: (its arrival, last).
      ['DATE', '3 1 2 4 5'],
      ['SUBJECT', '3 5 1 2 4'],
      // 1 and 2 are the same instant: the tie goes by sequence number, REVERSE or not.
      ['SUBJECT REVERSE DATE', '5 3 4 1 2'],
      ['FROM', '2 4 3 5 1'],
      // No To: at all is the empty string, first.
      ['TO', '5 3 1 2 4'],
      ['CC', '1 3 5 4 2'],
      // The encoded name decodes to Émile: after Bert, before nodate@.
      ['DISPLAYFROM', '2 4 3 5 1'],
      ['DISPLAYTO', '5 3 2 1 4'],
    ];
    for (const [keys, want] of table) assert.equal(await one(`SORT (${keys}) UTF-8 ALL`, 'SORT'), want, keys);
    // SIZE: the sizes of the bytes stored, smallest first.
    const bySize = sizes
      .map((n, i) => [n, i + 1] as const)
      .sort((x, y) => x[0] - y[0] || x[1] - y[1])
      .map(([, seq]) => seq)
      .join(' ');
    assert.equal(await one('SORT (SIZE) UTF-8 ALL', 'SORT'), bySize);
    assert.equal(await one('UID SORT (SUBJECT) UTF-8 NOT FROM adam', 'SORT'), '3 5 1 4');
    assert.match(await c.cmd('SORT (SUBJECT) ISO-8859-1 ALL'), /NO \[BADCHARSET/);
    assert.match(await c.cmd('SORT (REVERSE) UTF-8 ALL'), /BAD/);
    assert.match(await c.cmd('SORT (COLOR) UTF-8 ALL'), /BAD Unknown sort key/);
    assert.match(await c.cmd('SORT SUBJECT UTF-8 ALL'), /BAD/);
  });

  it('answers SORT RETURN (…) with ESEARCH, MIN and MAX in sort order, ALL in sort order (ESORT, RFC 5267 §3)', async () => {
    assert.match(await c.cmd('CAPABILITY'), / ESORT/);
    assert.match(
      await c.cmd('SORT RETURN (MIN MAX COUNT) (SUBJECT) UTF-8 ALL'),
      /^\* ESEARCH \(TAG "t\d+"\) MIN 3 MAX 4 COUNT 5\r$/m,
    );
    // By DATE the order is 3 1 2 4 5: a run going up by one is a range, nothing is reordered.
    assert.match(
      await c.cmd('SORT RETURN () (DATE) UTF-8 ALL'),
      /^\* ESEARCH \(TAG "t\d+"\) ALL 3,1:2,4:5\r$/m,
    );
    // REVERSE DATE: 5 4, then 1 and 2 (one instant, in sequence order), then 3: the last three one run.
    assert.match(await c.cmd('SORT RETURN (ALL) (REVERSE DATE) UTF-8 ALL'), /ALL 5,4,1:3\r$/m);
    assert.match(
      await c.cmd('UID SORT RETURN (COUNT ALL) (SUBJECT) UTF-8 SUBJECT nothing'),
      /^\* ESEARCH \(TAG "t\d+"\) UID COUNT 0\r$/m,
    );
    assert.match(await c.cmd('SORT RETURN (SAVE) (SUBJECT) UTF-8 ALL'), /BAD Unknown return option/);
    // PARTIAL (RFC 9394): a window of the sorted list, from the start or the end.
    assert.match(
      await c.cmd('SORT RETURN (PARTIAL 2:3 COUNT) (SUBJECT) UTF-8 ALL'),
      /^\* ESEARCH \(TAG "t\d+"\) PARTIAL \(2:3 5,1\) COUNT 5\r$/m,
    );
    assert.match(await c.cmd('SORT RETURN (PARTIAL -1:-2) (SUBJECT) UTF-8 ALL'), /PARTIAL \(-1:-2 2,4\)\r$/m);
    assert.match(await c.cmd('SORT RETURN (PARTIAL 9:10) (SUBJECT) UTF-8 ALL'), /PARTIAL \(9:10 NIL\)\r$/m);
    // A range written high to low is answered low to high; RETURN is taken after the charset too (as
    // Dovecot's test suite writes it).
    assert.match(
      await c.cmd('SORT (SUBJECT) US-ASCII RETURN (PARTIAL 3:2) ALL'),
      /^\* ESEARCH \(TAG "t\d+"\) PARTIAL \(2:3 5,1\)\r$/m,
    );
    assert.match(await c.cmd('SEARCH RETURN (PARTIAL -2:-1) ALL'), /PARTIAL \(-1:-2 4:5\)\r$/m);
    assert.match(await c.cmd('SORT (SUBJECT) UTF-8 RETURN (MIN) RETURN (MAX) ALL'), /BAD/);
  });

  it('sorts and searches right with the per-process memos turned off (they are caches, not the source)', async () => {
    const bare = await rig({ searchCacheMessages: 0 });
    try {
      for (const subject of ['charlie', 'alpha', 'bravo'])
        await storeMessage(bare, 'bob', 'INBOX', sample(subject));
      const b = await RawImap.connect(bare.tlsPort, true);
      await b.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
      await b.cmd('SELECT INBOX');
      assert.match(await b.cmd('SORT (SUBJECT) UTF-8 ALL'), /^\* SORT 2 3 1\r$/m);
      // SEARCH's envelope words likewise (they were lost with the memo off: nothing matched).
      assert.match(await b.cmd('SEARCH SUBJECT bravo'), /^\* SEARCH 3\r$/m);
      b.close();
    } finally {
      await bare.close();
    }
  });

  it('answers the same for messages stored before their structures kept the sort fields (their headers read)', async () => {
    const old = await rig();
    try {
      await fill(old, true);
      const inbox = (await old.store.getMailbox(old.accounts.bob!, 'INBOX'))!;
      assert.deepEqual(
        (await old.store.listSortFields(inbox.id)).map((f) => f.sort),
        rows.map(() => null),
      );
      const o = await RawImap.connect(old.tlsPort, true);
      await o.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
      await o.cmd('SELECT INBOX');
      for (const command of [
        'SORT (DATE) UTF-8 ALL',
        'SORT (SUBJECT) UTF-8 ALL',
        'SORT (FROM) UTF-8 ALL',
        'SORT (DISPLAYFROM) UTF-8 ALL',
        'SORT (CC) UTF-8 ALL',
        'THREAD REFERENCES UTF-8 ALL',
        'THREAD ORDEREDSUBJECT UTF-8 ALL',
      ]) {
        const line = (out: string) => out.split('\r\n').find((l) => /^\* (SORT|THREAD)/.test(l));
        assert.equal(line(await o.cmd(command)), line(await c.cmd(command)), command);
      }
      o.close();
    } finally {
      await old.close();
    }
  });

  it('threads by subject and by references (RFC 5256 §3)', async () => {
    // ORDEREDSUBJECT: "Budget" (3, then 5), "Plans" (1, then 2 and 4 by date).
    assert.equal(await one('THREAD ORDEREDSUBJECT UTF-8 ALL', 'THREAD'), '(3 5)(1 (2)(4))');
    // REFERENCES: 1 ← 2 ← 4 by ids; 5 joins 3 by base subject as a reply.
    assert.equal(await one('THREAD REFERENCES UTF-8 ALL', 'THREAD'), '(3 5)(1 2 4)');
    assert.equal(await one('UID THREAD REFERENCES UTF-8 FROM adam', 'THREAD'), '(2)');
    assert.equal(await one('THREAD REFERENCES UTF-8 SUBJECT nothing', 'THREAD'), '');
    assert.match(await c.cmd('THREAD JWZ UTF-8 ALL'), /BAD Unknown threading algorithm/);
  });
});

describe('IMAP extensions: CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267 §4)', () => {
  let r: Rig;
  const session = async () => {
    const c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    assert.match(await c.cmd('SELECT INBOX'), /OK/);
    return c;
  };
  const expand = (set: string) =>
    set.split(',').flatMap((part) => {
      const [a, b] = part.split(':').map(Number) as [number, number?];
      if (b === undefined) return [a];
      const out: number[] = [];
      for (let n = Math.min(a, b); n <= Math.max(a, b); n++) out.push(n);
      return out;
    });
  /** The ESEARCH updates for `tag` in `text`, as kind and [position, ids] pairs, in the order they came. */
  const updates = (text: string, tag: string) =>
    [
      ...text.matchAll(
        new RegExp(
          `^\\* ESEARCH \\(TAG "${tag}"\\)( UID)?((?: (?:ADDTO|REMOVEFROM) \\([^)]*\\))+)\\r$`,
          'gm',
        ),
      ),
    ].flatMap((m) =>
      [...m[2]!.matchAll(/(ADDTO|REMOVEFROM) \(([^)]*)\)/g)].map((item) => {
        const words = item[2]!.split(' ');
        const pairs: Array<[number, number[]]> = [];
        for (let i = 0; i < words.length; i += 2) pairs.push([Number(words[i]), expand(words[i + 1]!)]);
        return { kind: item[1]!, pairs };
      }),
    );
  /** What a client holding `list` makes of the updates (§4.3.3–4: pair by pair, in order). */
  const apply = (list: number[], text: string, tag: string, sorted: boolean) => {
    for (const u of updates(text, tag))
      list = applyChanges(
        list,
        u.kind === 'ADDTO' ? { removed: [], added: u.pairs } : { removed: u.pairs, added: [] },
        sorted,
      );
    return list;
  };
  const uidsOf = (text: string) => {
    const all = /^\* (?:SORT|SEARCH)((?: \d+)*)\r$/m.exec(text);
    assert.ok(all, text);
    return all[1]!.trim() ? all[1]!.trim().split(' ').map(Number) : [];
  };
  beforeEach(async () => {
    r = await rig();
    for (const [i, subject] of ['delta', 'alpha', 'echo', 'charlie'].entries())
      await storeMessage(r, 'bob', 'INBOX', sample(subject), { flags: i === 0 ? ['\\Seen'] : [] });
  });
  afterEach(async () => {
    await r?.close();
  });

  it('keeps a SEARCH result current: REMOVEFROM before EXPUNGE, ADDTO after EXISTS, own STORE and EXPUNGE included', async () => {
    const c = await session();
    assert.match(await c.cmd('CAPABILITY'), / CONTEXT=SEARCH CONTEXT=SORT/);
    // One context by UID, one by sequence number; COUNT comes now, the changes later.
    assert.match(
      await c.send('u1 UID SEARCH RETURN (UPDATE COUNT) UNSEEN\r\n', /u1 OK[^\r]*\r\n/),
      /^\* ESEARCH \(TAG "u1"\) UID COUNT 3\r$/m,
    );
    assert.match(
      await c.send('s1 SEARCH RETURN (CONTEXT UPDATE) UNSEEN\r\n', /s1 OK[^\r]*\r\n/),
      /^\* ESEARCH \(TAG "s1"\)\r$/m,
    );
    let byUid = [2, 3, 4];
    let bySeq = [2, 3, 4];
    await c.send('i1 IDLE\r\n', /\+ [^\r\n]*\r\n/);
    const other = await session();
    await other.cmd('UID STORE 2 +FLAGS.SILENT (\\Seen)');
    let seen = await c.send('', /ESEARCH \(TAG "s1"\)[^\r]*\r\n/);
    assert.match(seen, /^\* ESEARCH \(TAG "u1"\) UID REMOVEFROM \(0 2\)\r$/m);
    byUid = apply(byUid, seen, 'u1', false);
    bySeq = apply(bySeq, seen, 's1', false);
    // A new unseen message: EXISTS first, so its sequence number means something.
    await storeMessage(r, 'bob', 'INBOX', sample('bravo'));
    seen = await c.send('', /ESEARCH \(TAG "s1"\)[^\r]*\r\n/);
    assert.match(seen, /^\* 5 EXISTS\r\n(?:.*\r\n)*?\* ESEARCH \(TAG "u1"\) UID ADDTO \(0 5\)\r$/m);
    assert.match(seen, /^\* ESEARCH \(TAG "s1"\) ADDTO \(0 5\)\r$/m);
    byUid = apply(byUid, seen, 'u1', false);
    bySeq = apply(bySeq, seen, 's1', false);
    // An expunge elsewhere: the result loses it while its sequence number (3) still holds, then EXPUNGE.
    // The flag change is seen first, alone, so the expunge comes by itself: the mailbox is read once.
    await other.cmd('UID STORE 3 +FLAGS.SILENT (\\Deleted)');
    await c.send('', /\* 3 FETCH \(UID 3 [^\r]*\r\n/);
    await other.cmd('UID EXPUNGE 3');
    seen = await c.send('', /\* 3 EXPUNGE\r\n/);
    assert.match(seen, /^\* ESEARCH \(TAG "s1"\) REMOVEFROM \(0 3\)\r\n(?:.*\r\n)*?\* 3 EXPUNGE\r$/m);
    byUid = apply(byUid, seen, 'u1', false);
    // Sequence numbers after the expunge: the client's list shifts with the EXPUNGE (RFC 3501 §7.4.1).
    bySeq = apply(bySeq, seen, 's1', false).map((n) => (n > 3 ? n - 1 : n));
    await c.send('DONE\r\n', /i1 OK[^\r]*\r\n/);
    // The session's own STORE takes a message out too, told with the STORE's answer.
    const own = await c.cmd('UID STORE 4 +FLAGS (\\Seen)');
    assert.match(own, /^\* ESEARCH \(TAG "u1"\) UID REMOVEFROM \(0 4\)\r$/m);
    byUid = apply(byUid, own, 'u1', false);
    bySeq = apply(bySeq, own, 's1', false);
    assert.deepEqual(byUid, uidsOf(await c.cmd('UID SEARCH UNSEEN')));
    assert.deepEqual(bySeq, uidsOf(await c.cmd('SEARCH UNSEEN')));
    // CANCELUPDATE: no more for u1; s1 goes on.
    assert.match(await c.cmd('CANCELUPDATE "u1"'), /OK/);
    const unread = await c.cmd('STORE 1:* -FLAGS (\\Seen)');
    assert.equal(updates(unread, 'u1').length, 0);
    assert.deepEqual(updates(unread, 's1'), [{ kind: 'ADDTO', pairs: [[0, [1, 2, 3]]] }]);
    // The session's own EXPUNGE: the REMOVEFROM while UID 4 is still message 3, then the EXPUNGE.
    await c.cmd('UID STORE 4 +FLAGS.SILENT (\\Deleted)');
    assert.match(await c.cmd('EXPUNGE'), /^\* ESEARCH \(TAG "s1"\) REMOVEFROM \(0 3\)\r\n\* 3 EXPUNGE\r$/m);
    // Expunged elsewhere between two commands: the next NOOP reads both changes at once.
    await other.cmd('UID STORE 5 +FLAGS.SILENT (\\Deleted)');
    await other.cmd('UID EXPUNGE 5');
    assert.match(await c.cmd('NOOP'), /^\* ESEARCH \(TAG "s1"\) REMOVEFROM \(0 3\)\r\n\* 3 EXPUNGE\r$/m);
    assert.match(await c.cmd('CANCELUPDATE "u1"'), /BAD No result is kept current for the tag "u1"/);
    assert.match(await c.cmd('CANCELUPDATE "s1" "nope"'), /BAD/);
    other.close();
    c.close();
  });

  it('refuses a tag in use, says NOUPDATE past the limit and ends the contexts when the mailbox is left', async () => {
    const c = await session();
    assert.match(await c.send('k1 SEARCH RETURN (UPDATE) ALL\r\n', /k1 OK[^\r]*\r\n/), /ESEARCH/);
    assert.match(await c.send('k1 SEARCH RETURN (UPDATE) ALL\r\n', /k1 (OK|BAD)[^\r]*\r\n/), /k1 BAD/);
    for (const n of [2, 3, 4, 5])
      await c.send(`k${n} SORT RETURN (UPDATE) (SUBJECT) UTF-8 ALL\r\n`, /OK[^\r]*\r\n/);
    // The sixth: refused as an update, the command itself answered (COUNT) and OK (§4.3.1).
    const sixth = await c.send('k6 SEARCH RETURN (UPDATE COUNT) ALL\r\n', /k6 (OK|NO|BAD)[^\r]*\r\n/);
    assert.match(sixth, /^\* NO \[NOUPDATE "k6"\][^\r]*\r\n\* ESEARCH \(TAG "k6"\) COUNT 4\r\nk6 OK/m);
    assert.match(await c.cmd('UNSELECT'), /OK/);
    assert.match(await c.cmd('SELECT INBOX'), /OK/);
    await storeMessage(r, 'bob', 'INBOX', sample('late'));
    const noop = await c.cmd('NOOP');
    assert.match(noop, /\* 5 EXISTS/);
    assert.doesNotMatch(noop, /ESEARCH/);
    assert.match(await c.cmd('CANCELUPDATE "k1"'), /BAD/);
    c.close();
  });

  it('keeps a SORT result current with positions in the sort order', async () => {
    const c = await session();
    // Unseen by subject: alpha (2), charlie (4), echo (3).
    const first = await c.send(
      'o1 UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 UNSEEN\r\n',
      /o1 OK[^\r]*\r\n/,
    );
    assert.match(first, /^\* ESEARCH \(TAG "o1"\) UID ALL 2,4,3\r$/m);
    let list = [2, 4, 3];
    const other = await session();
    // bravo (5) goes between alpha and charlie: position 2.
    await storeMessage(r, 'bob', 'INBOX', sample('bravo'));
    let seen = await c.cmd('NOOP');
    assert.match(seen, /^\* ESEARCH \(TAG "o1"\) UID ADDTO \(2 5\)\r$/m);
    list = apply(list, seen, 'o1', true);
    // charlie read elsewhere, delta unread again (it comes before echo), foxtrot and able arrive, alpha
    // is expunged: two removals and three additions at once.
    await other.cmd('UID STORE 4 +FLAGS.SILENT (\\Seen)');
    await other.cmd('UID STORE 1 -FLAGS.SILENT (\\Seen)');
    await storeMessage(r, 'bob', 'INBOX', sample('foxtrot'));
    await storeMessage(r, 'bob', 'INBOX', sample('able'));
    await other.cmd('UID STORE 2 +FLAGS.SILENT (\\Deleted)');
    await other.cmd('UID EXPUNGE 2');
    seen = await c.cmd('NOOP');
    list = apply(list, seen, 'o1', true);
    assert.deepEqual(list, uidsOf(await c.cmd('UID SORT (SUBJECT) UTF-8 UNSEEN')));
    assert.deepEqual(list, [7, 5, 1, 3, 6]);
    // By sequence number too, with the same positions.
    const seq = await c.send('o2 SORT RETURN (UPDATE) (REVERSE SUBJECT) UTF-8 UNSEEN\r\n', /o2 OK[^\r]*\r\n/);
    assert.match(seq, /^\* ESEARCH \(TAG "o2"\)\r$/m);
    let bySeq = uidsOf(await c.cmd('SORT (REVERSE SUBJECT) UTF-8 UNSEEN'));
    await other.cmd('UID STORE 5 +FLAGS.SILENT (\\Seen)');
    seen = await c.cmd('NOOP');
    assert.equal(updates(seen, 'o2').length, 1);
    bySeq = apply(bySeq, seen, 'o2', true);
    assert.deepEqual(bySeq, uidsOf(await c.cmd('SORT (REVERSE SUBJECT) UTF-8 UNSEEN')));
    other.close();
    c.close();
  });
});

describe('IMAP extensions: CATENATE (RFC 4469)', () => {
  let r: Rig;
  let c: RawImap;
  let validity = 0;
  const lit = (text: string | Buffer) => `{${Buffer.byteLength(text)}+}\r\n${text}`;
  const original = Buffer.from(
    [
      'From: Ann <ann@example.org>',
      'To: Bob <bob@example.org>',
      'Subject: Report',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"',
      '',
      '--b',
      'Content-Type: text/plain',
      '',
      'See the attachment.',
      '--b',
      'Content-Type: application/pdf; name="report.pdf"',
      'Content-Transfer-Encoding: base64',
      '',
      'JVBERi0xLjQK',
      '--b--',
      '',
    ].join('\r\n'),
  );
  const body = async (box: string, uid: number) => {
    await c.cmd(`EXAMINE ${box}`);
    const out = await c.cmd(`UID FETCH ${uid} BODY.PEEK[]`);
    const m = /BODY\[\] \{(\d+)\}\r\n/.exec(out);
    assert.ok(m, out);
    const start = m.index + m[0].length;
    return out.slice(start, start + Number(m[1]));
  };
  const messages = async (box: string) =>
    Number(/MESSAGES (\d+)/.exec(await c.cmd(`STATUS ${box} (MESSAGES)`))![1]);
  before(async () => {
    r = await rig({ maxMessageSize: 4000 });
    await storeMessage(r, 'bob', 'INBOX', original);
    c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    validity = Number(/UIDVALIDITY (\d+)/.exec(await c.cmd('STATUS INBOX (UIDVALIDITY)'))![1]);
  });
  after(async () => {
    c?.close();
    await r?.close();
  });

  it('advertises CATENATE and makes a forward of a message and its attachment from URLs and text (§5)', async () => {
    assert.match(await c.cmd('CAPABILITY'), / CATENATE/);
    const head =
      'From: Bob <bob@example.org>\r\nTo: Carl <carl@example.net>\r\nSubject: Fwd: Report\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="f"\r\n\r\n--f\r\nContent-Type: text/plain\r\n\r\nHere it is.\r\n--f\r\n';
    const out = await c.cmd(
      `APPEND Drafts (\\Draft) CATENATE (TEXT ${lit(head)} URL "/INBOX;UIDVALIDITY=${validity}/;UID=1/;SECTION=2.MIME" URL "imap://bob%40example.org@imap.test/INBOX/;UID=1/;SECTION=2" TEXT ${lit('\r\n--f--\r\n')})`,
    );
    assert.match(out, /OK \[APPENDUID \d+ 1\] APPEND completed/);
    const mime =
      'Content-Type: application/pdf; name="report.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n';
    assert.equal(await body('Drafts', 1), `${head}${mime}JVBERi0xLjQK\r\n--f--\r\n`);
    // The whole message, its header alone and a PARTIAL of it, with MULTIAPPEND beside a literal.
    const two = await c.cmd(
      `APPEND Drafts CATENATE (URL "/INBOX/;UID=1") CATENATE (URL "/INBOX/;UID=1/;SECTION=HEADER.FIELDS%20(SUBJECT)" URL "/INBOX/;UID=1/;SECTION=TEXT/;PARTIAL=5.18") ${lit('Subject: plain\r\n\r\nx\r\n')}`,
    );
    assert.match(two, /OK \[APPENDUID \d+ 2:4\]/);
    assert.equal(await body('Drafts', 2), original.toString('latin1'));
    assert.equal(await body('Drafts', 3), 'Subject: Report\r\n\r\nContent-Type: text');
    // The new message's structure was made from the whole: BODYSTRUCTURE of the forward has two parts.
    await c.cmd('EXAMINE Drafts');
    assert.match(await c.cmd('UID FETCH 1 BODYSTRUCTURE'), /"application" "pdf"/);
  });

  it('answers NO [BADURL] for a URL naming nothing, and stores none of the command', async () => {
    const before = await messages('Drafts');
    const bad: Array<[string, RegExp]> = [
      ['/INBOX/;UID=99', /no message there/],
      [`/INBOX;UIDVALIDITY=${validity + 1}/;UID=1`, /another UIDVALIDITY/],
      ['/Nowhere/;UID=1', /no mailbox of yours/],
      ['/INBOX/;UID=1/;SECTION=7', /no such part/],
      ['imap://elsewhere.example/INBOX/;UID=1', /another server/],
      ['imap://alice%40example.org@imap.test/INBOX/;UID=1', /another user/],
      ['/INBOX/;UID=1;URLAUTH=anonymous:internal:0000', /URLAUTH/],
    ];
    for (const [url, why] of bad) {
      const out = await c.cmd(`APPEND Drafts ${lit('Subject: first\r\n\r\nok\r\n')} CATENATE (URL "${url}")`);
      assert.match(out, new RegExp(`NO \\[BADURL ${url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\]`), url);
      assert.match(out, why, url);
    }
    assert.equal(await messages('Drafts'), before);
    // Past the message limit (4,000 octets here) when put together: TOOBIG, nothing stored.
    const big = 'y'.repeat(3500);
    assert.match(
      await c.cmd(`APPEND Drafts CATENATE (TEXT ${lit(big)} URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")`),
      /NO \[TOOBIG\]/,
    );
    assert.match(await c.cmd('APPEND Drafts CATENATE ()'), /BAD/);
    assert.match(await c.cmd('APPEND Drafts CATENATE (FILE "x")'), /BAD Unknown CATENATE part/);
    assert.equal(await messages('Drafts'), before);
  });
});

describe('IMAP extensions: NOTIFY (RFC 5465)', () => {
  let r: Rig;
  const session = async (select = true) => {
    const c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    if (select) assert.match(await c.cmd('SELECT INBOX'), /OK/);
    return c;
  };
  /** Waits for what the server sends by itself, no command given. */
  const told = (c: RawImap, pattern: RegExp) => c.send('', pattern);
  beforeEach(async () => {
    r = await rig();
    await storeMessage(r, 'bob', 'INBOX', sample('first'));
  });
  afterEach(async () => {
    await r?.close();
  });

  it('tells, with no command running, of new, flagged and expunged messages, other mailboxes and names', async () => {
    const c = await session();
    assert.match(await c.cmd('CAPABILITY'), / NOTIFY/);
    // STATUS: the other mailboxes now, before the OK; not INBOX (selected).
    const set = await c.cmd(
      'NOTIFY SET STATUS (SELECTED (MessageNew (UID FLAGS) MessageExpunge FlagChange)) (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))',
    );
    assert.match(set, /^\* STATUS "Drafts" \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+ HIGHESTMODSEQ \d+\)\r$/m);
    assert.match(set, /^\* STATUS "Archive" \(/m);
    assert.doesNotMatch(set, /STATUS INBOX/);
    assert.match(set, /OK NOTIFY completed/);
    // A delivery to INBOX: EXISTS, then the FETCH MessageNew asked for (§5.2).
    await storeMessage(r, 'bob', 'INBOX', sample('second'));
    assert.match(
      await told(c, /\* 2 FETCH [^\r]*\r\n/),
      /\* 2 EXISTS\r\n(?:.*\r\n)*?\* 2 FETCH \(UID 2 FLAGS \(\\Recent\)\)\r\n/,
    );
    // Its own APPEND: EXISTS, and no FETCH for it (§5.2: the client knows what it appended).
    const mine = sample('mine').toString();
    const appended = await c.cmd(`APPEND INBOX {${mine.length}+}\r\n${mine}`);
    assert.match(appended, /^\* 3 EXISTS\r$/m);
    assert.doesNotMatch(appended, /FETCH/);
    // Another session flags and expunges: FETCH (§5.1) and EXPUNGE (§5.3) come by themselves.
    const other = await session();
    await other.cmd('UID STORE 1 +FLAGS.SILENT (\\Flagged)');
    assert.match(await told(c, /\* 1 FETCH [^\r]*\r\n/), /\* 1 FETCH \(UID 1 FLAGS \(\\Flagged \\Recent\)\)/);
    await other.cmd('UID STORE 2 +FLAGS.SILENT (\\Deleted)');
    await other.cmd('UID EXPUNGE 2');
    assert.match(await told(c, /\* 2 EXPUNGE\r\n/), /\* 2 EXPUNGE/);
    // Another mailbox: a new one is LISTed, its messages give STATUS (§5.2, §5.4).
    await other.cmd('CREATE Projects');
    // Not subscribed: CREATE does not subscribe (RFC 3501 §6.3.3).
    assert.match(await told(c, /LIST [^\r]*"Projects"\r\n/), /^\* LIST \(\) "\/" "Projects"\r$/m);
    await other.cmd(`APPEND Projects {${sample('p').length}+}\r\n${sample('p').toString()}`);
    assert.match(
      await told(c, /STATUS "Projects"[^\r]*\r\n/),
      /^\* STATUS "Projects" \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+ HIGHESTMODSEQ \d+\)\r$/m,
    );
    // Renamed, subscribed, deleted (§5.4, §5.5).
    await other.cmd('RENAME Projects Done');
    assert.match(
      await told(c, /OLDNAME[^\r]*\r\n/),
      /^\* LIST \(\) "\/" "Done" \("OLDNAME" \("Projects"\)\)\r$/m,
    );
    await other.cmd('SUBSCRIBE Done');
    assert.match(await told(c, /LIST [^\r]*"Done"\r\n/), /^\* LIST \(\\Subscribed\) "\/" "Done"\r$/m);
    await other.cmd('DELETE Done');
    assert.match(await told(c, /NonExistent[^\r]*\r\n/), /^\* LIST \(\\NonExistent\) "\/" "Done"\r$/m);
    // In IDLE as well.
    await c.send('i1 IDLE\r\n', /\+ [^\r\n]*\r\n/);
    await storeMessage(r, 'bob', 'Junk', sample('spam'));
    assert.match(await told(c, /STATUS "Junk"[^\r]*\r\n/), /MESSAGES 1/);
    await c.send('DONE\r\n', /i1 OK[^\r]*\r\n/);
    // NOTIFY NONE: nothing more, not even at the next command.
    assert.match(await c.cmd('NOTIFY NONE'), /OK/);
    await storeMessage(r, 'bob', 'Junk', sample('more spam'));
    await storeMessage(r, 'bob', 'INBOX', sample('third'));
    const quiet = await c.cmd('NOOP');
    assert.doesNotMatch(quiet, /STATUS|EXISTS/);
    other.close();
    c.close();
  });

  it('holds expunges with SELECTED-DELAYED until a command may report them, and leaves out FlagChange when not asked', async () => {
    const c = await session();
    await storeMessage(r, 'bob', 'INBOX', sample('second'));
    assert.match(await c.cmd('NOTIFY SET (SELECTED-DELAYED (MessageNew MessageExpunge))'), /\* 2 EXISTS/);
    const other = await session();
    await other.cmd('UID STORE 1 +FLAGS.SILENT (\\Deleted \\Seen)');
    await other.cmd('UID EXPUNGE 1');
    // The new message is told at once; the expunge waits, and the flag change is never told.
    await storeMessage(r, 'bob', 'INBOX', sample('third'));
    const pushed = await told(c, /\* 3 EXISTS\r\n/);
    assert.doesNotMatch(pushed, /EXPUNGE|FETCH/);
    const noop = await c.cmd('NOOP');
    assert.match(noop, /^\* 1 EXPUNGE\r$/m);
    assert.doesNotMatch(noop, /FETCH/);
    other.close();
    c.close();
  });

  it('refuses what RFC 5465 forbids: BAD for broken groups, NO [BADEVENT] for events not offered', async () => {
    const c = await session(false);
    const bad = [
      'NOTIFY SET (SELECTED (MessageNew))',
      'NOTIFY SET (PERSONAL (FlagChange))',
      'NOTIFY SET (SELECTED (MailboxName))',
      'NOTIFY SET (SELECTED (MessageNew MessageExpunge)) (SELECTED-DELAYED (MessageNew MessageExpunge))',
      'NOTIFY SET (PERSONAL (MessageNew (UID) MessageExpunge))',
      'NOTIFY SET (EVERYWHERE (MessageNew MessageExpunge))',
      'NOTIFY SET (SUBTREE (MessageNew MessageExpunge))',
      'NOTIFY SET (PERSONAL ())',
      'NOTIFY SET (PERSONAL (Shouting))',
      'NOTIFY SET',
      'NOTIFY',
      'NOTIFY NONE extra',
    ];
    for (const command of bad) assert.match(await c.cmd(command), /^t\d+ BAD /m, command);
    assert.match(
      await c.cmd('NOTIFY SET (PERSONAL (MessageNew MessageExpunge AnnotationChange))'),
      /NO \[BADEVENT \(MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange\)\]/,
    );
    // Well-formed: MAILBOXES and SUBTREE with names (INBOX in any case), NONE for a group, not selected.
    assert.match(
      await c.cmd(
        'NOTIFY SET STATUS (MAILBOXES (inbox Sent) (MessageNew MessageExpunge)) (SUBTREE Archive NONE)',
      ),
      /^\* STATUS INBOX \(MESSAGES 1 UIDNEXT 2 UIDVALIDITY \d+\)\r\n\* STATUS "Sent" \(MESSAGES 0 UIDNEXT 1 UIDVALIDITY \d+\)\r\nt\d+ OK/m,
    );
    await storeMessage(r, 'bob', 'Sent', sample('sent'));
    assert.match(await told(c, /STATUS "Sent"[^\r]*\r\n/), /MESSAGES 1/);
    c.close();
  });
});

describe('IMAP extensions: MULTIAPPEND (RFC 3502)', () => {
  let r: Rig;
  let c: RawImap;
  before(async () => {
    // 2,000 octets a message at most; a quota of 5,000 octets.
    r = await rig({ maxMessageSize: 2000, quota: 5000 });
    c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    assert.match(await c.cmd('CREATE Box'), /OK/);
  });
  after(async () => {
    c?.close();
    await r?.close();
  });
  const body = (subject: string, size = 0) =>
    `Subject: ${subject}\r\n\r\n${'x'.repeat(Math.max(0, size - subject.length - 13))}\r\n`;
  const lit = (text: string) => `{${Buffer.byteLength(text)}+}\r\n${text}`;
  const messages = async () => Number(/MESSAGES (\d+)/.exec(await c.cmd('STATUS Box (MESSAGES)'))![1]);

  it('advertises MULTIAPPEND and appends several messages in one command, with their flags and dates', async () => {
    assert.match(await c.cmd('CAPABILITY'), / MULTIAPPEND/);
    const out = await c.cmd(
      `APPEND Box (\\Seen) ${lit(body('one'))} (\\Flagged) "01-Feb-2026 10:00:00 +0000" ${lit(body('two'))} ${lit(body('three'))}`,
    );
    assert.match(out, /OK \[APPENDUID \d+ 1:3\] APPEND completed/);
    await c.cmd('SELECT Box');
    const fetched = await c.cmd('FETCH 1:3 (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])');
    // \Recent: this session is the first to see them.
    assert.match(fetched, /\* 1 FETCH \(FLAGS \(\\Seen \\Recent\) .*Subject: one/s);
    assert.match(
      fetched,
      /\* 2 FETCH \(FLAGS \(\\Flagged \\Recent\) INTERNALDATE "01-Feb-2026 10:00:00 \+0000".*Subject: two/s,
    );
    assert.match(fetched, /\* 3 FETCH \(FLAGS \(\\Recent\) .*Subject: three/s);
    await c.cmd('UNSELECT');
  });

  it('stores none when one message is too big, too many bytes come together, or the quota ends in the middle', async () => {
    const before = await messages();
    // The second literal is over the limit: refused before it is read, the first is not stored.
    const big = await c.send(
      `t90 APPEND Box ${lit(body('small'))} {2500}\r\n`,
      /t90 (OK|NO|BAD)[^\r\n]*\r\n/,
    );
    assert.match(big, /t90 NO \[TOOBIG\]/);
    assert.equal(await messages(), before);
    // Each under the limit, together over twice it.
    const many = await c.send(
      `t91 APPEND Box ${lit(body('a', 1900))} ${lit(body('b', 1900))} {1900}\r\n`,
      /t91 (OK|NO|BAD)[^\r\n]*\r\n/,
    );
    assert.match(many, /t91 NO \[TOOBIG\] These messages together/);
    assert.equal(await messages(), before);
    // The quota (5,000 octets, about 60 used) holds two of 1,900 and one of 100, but not a fourth of 1,900: neither of the last two stays.
    const quota = await c.cmd(`APPEND Box ${lit(body('q1', 1900))} ${lit(body('q2', 1900))}`);
    assert.match(quota, /OK/);
    const full = await c.cmd(`APPEND Box ${lit(body('q3', 100))} ${lit(body('q4', 1900))}`);

    assert.match(full, /NO \[OVERQUOTA\]/);
    assert.equal(await messages(), before + 2);
    // Usage is what the two stored messages take: the expunged first half gave its bytes back.
    const usage = Number(/STORAGE (\d+)/.exec(await c.cmd('GETQUOTAROOT Box'))![1]);
    assert.ok(usage < 5, `usage ${usage} KiB`);
  });
});

describe('IMAP extensions: QRESYNC (RFC 7162 §3.2)', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    for (let i = 1; i <= 6; i++) await storeMessage(r, 'bob', 'INBOX', sample(`resync ${i}`));
  });
  after(() => r?.close());
  const session = async (qresync = true) => {
    const c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    if (qresync) assert.match(await c.cmd('ENABLE QRESYNC'), /\* ENABLED QRESYNC\r\n/);
    return c;
  };
  /** UID → flags, from FETCH responses (the client's cache). */
  const flagsIn = (out: string) =>
    new Map(
      [...out.matchAll(/^\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\)/gm)].map((m) => [
        Number(m[1]),
        m[2]!
          .split(' ')
          .filter((f) => f && f !== '\\Recent')
          .sort()
          .join(' '),
      ]),
    );
  const uidsOf = (set: string) =>
    set.split(',').flatMap((p) => {
      const [a, b = a] = p.split(':').map(Number);
      return Array.from({ length: b! - a! + 1 }, (_, k) => a! + k);
    });

  it('brings a client that was away to exactly the server state: FETCH for changes, VANISHED (EARLIER) for what went', async () => {
    const away = await session();
    const selected = await away.cmd('SELECT INBOX');
    assert.match(await away.cmd('CAPABILITY'), / QRESYNC/);
    const uidValidity = Number(/UIDVALIDITY (\d+)/.exec(selected)![1]);
    const modseq = Number(/HIGHESTMODSEQ (\d+)/.exec(selected)![1]);
    const cache = flagsIn(await away.cmd('UID FETCH 1:* (UID FLAGS)'));
    assert.equal(cache.size, 6);
    away.close();
    // Meanwhile, another client (without QRESYNC) reads, flags, deletes and a message arrives.
    const other = await session(false);
    await other.cmd('SELECT INBOX');
    await other.cmd('UID STORE 2 +FLAGS (\\Seen)');
    await other.cmd('UID STORE 5 +FLAGS (\\Flagged $Work)');
    await other.cmd('UID STORE 3:4 +FLAGS (\\Deleted)');
    assert.match(await other.cmd('EXPUNGE'), /\* 4 EXPUNGE\r\n\* 3 EXPUNGE\r\n/);
    other.close();
    await storeMessage(r, 'bob', 'INBOX', sample('resync 7'));
    // The journal forgets everything (once the service's row cache has caught up, as it does long before
    // the real pruning reaches it): the client's changes are gone from it, and the answer must still be complete.
    const look = await session(false);
    assert.match(await look.cmd('SELECT INBOX'), /\* 5 EXISTS/);
    look.close();
    assert.ok((await r.store.pruneJournal(0)) > 0);

    const back = await session();
    const out = await back.cmd(`SELECT INBOX (QRESYNC (${uidValidity} ${modseq}))`);
    assert.match(out, /^\* 5 EXISTS\r\n/m);
    const changed = flagsIn(out);
    assert.deepEqual([...changed.keys()].sort(), [2, 5, 7]);
    const vanished = /^\* VANISHED \(EARLIER\) (\S+)\r$/m.exec(out)![1]!;
    // FETCHes come before VANISHED (RFC 7162 §3.2.5.2's example), both before the tagged OK.
    assert.ok(out.indexOf('VANISHED') > out.lastIndexOf(' FETCH '));
    // The client applies it: what vanished goes, what changed or is new takes its flags.
    for (const u of uidsOf(vanished)) cache.delete(u);
    for (const [u, f] of changed) cache.set(u, f);
    const server = flagsIn(await back.cmd('UID FETCH 1:* (UID FLAGS)'));
    assert.deepEqual(cache, server);
    assert.deepEqual([...server.keys()], [1, 2, 5, 6, 7]);
    // With the UIDs it knows, the client is told exactly what of them is gone.
    const known = await back.cmd(`SELECT INBOX (QRESYNC (${uidValidity} ${modseq} 1:6))`);
    assert.match(known, /^\* OK \[CLOSED\]/m);
    assert.match(known, /^\* VANISHED \(EARLIER\) 3:4\r$/m);
    assert.deepEqual([...flagsIn(known).keys()].sort(), [2, 5]);
    // Another UIDVALIDITY: nothing to resynchronise, the client starts over.
    const other2 = await back.cmd(`SELECT INBOX (QRESYNC (${uidValidity + 1} ${modseq}))`);
    assert.doesNotMatch(other2, /VANISHED| FETCH /);
    // UID FETCH … (CHANGEDSINCE … VANISHED) (§3.2.6): the same, for a UID range.
    const fetched = await back.cmd(`UID FETCH 2:6 (FLAGS) (CHANGEDSINCE ${modseq} VANISHED)`);
    assert.match(fetched, /^\* VANISHED \(EARLIER\) 3:4\r\n\* 2 FETCH \(UID 2 FLAGS/m);
    assert.deepEqual([...flagsIn(fetched).keys()], [2, 5]);
    assert.match(await back.cmd(`FETCH 1:* (FLAGS) (CHANGEDSINCE ${modseq} VANISHED)`), /BAD/);
    assert.match(await back.cmd('UID FETCH 1:* (FLAGS) (VANISHED)'), /BAD VANISHED needs CHANGEDSINCE/);
    back.close();
    const plain = await session(false);
    assert.match(
      await plain.cmd(`SELECT INBOX (QRESYNC (${uidValidity} ${modseq}))`),
      /BAD ENABLE QRESYNC first/,
    );
    plain.close();
  });

  it('tells a session in IDLE of another session expunging and flagging with VANISHED and FETCH (MODSEQ), in that order', async () => {
    const idle = await session();
    await idle.cmd('SELECT INBOX');
    const before = flagsIn(await idle.cmd('UID FETCH 1:* (UID FLAGS)'));
    assert.deepEqual([...before.keys()], [1, 2, 5, 6, 7]);
    await idle.send('i1 IDLE\r\n', /\+ [^\r\n]*\r\n/);
    const other = await session(false);
    await other.cmd('SELECT INBOX');
    await other.cmd('UID STORE 1 +FLAGS.SILENT (\\Deleted)');
    await other.cmd('UID EXPUNGE 1');
    await other.cmd('UID STORE 6 +FLAGS.SILENT (\\Answered)');
    other.close();
    const seen = await idle.send('', /\* \d+ FETCH \(UID 6 [^\r\n]*\r\n/);
    // UID 1 goes first; then UID 6 is the third message (2, 5, 6, 7) and says its MODSEQ.
    assert.match(
      seen,
      /\* VANISHED 1\r\n(?:.*\r\n)*?\* 3 FETCH \(UID 6 FLAGS \(\\Answered\) MODSEQ \(\d+\)\)\r\n/,
    );
    assert.doesNotMatch(seen, /EXPUNGE/);
    await idle.send('DONE\r\n', /i1 OK/);
    // imapflow with QRESYNC on hears the same as an expunge it can attribute (RFC 7162 §3.2.10).
    const flow = await r.client('bob', { qresync: true });
    try {
      const lock = await flow.getMailboxLock('INBOX');
      const heard: Array<{ uid?: number; vanished?: boolean; earlier?: boolean }> = [];
      flow.on('expunge', (e) => heard.push(e));
      flow.idle().catch(() => undefined);
      const other2 = await session(false);
      await other2.cmd('SELECT INBOX');
      await other2.cmd('UID STORE 5 +FLAGS.SILENT (\\Deleted)');
      await other2.cmd('UID EXPUNGE 5');
      other2.close();
      await eventually(() => heard.length > 0);
      assert.deepEqual(
        heard.map((e) => [e.uid, e.vanished, e.earlier]),
        [[5, true, false]],
      );
      assert.equal(flow.mailbox ? flow.mailbox.exists : -1, 3);
      lock.release();
    } finally {
      await flow.logout();
    }
    // In its own session too, an EXPUNGE is reported as VANISHED.
    await idle.cmd('UID STORE 2 +FLAGS.SILENT (\\Deleted)');
    // (with UID 5, which the other session expunged meanwhile)
    assert.match(await idle.cmd('EXPUNGE'), /^\* VANISHED 2,5\r\n/m);
    idle.close();
  });
});

describe('IMAP extensions: BINARY (RFC 3516)', () => {
  let r: Rig;
  let c: RawImap;
  // An attachment with NUL and high bytes, in base64; a text part in quoted-printable; one in x-uuencode.
  const attachment = Buffer.from([0, 1, 2, 255, 0, 0x0d, 0x0a, 65, 66, 0]);
  const raw = Buffer.from(
    [
      'Subject: binary',
      'MIME-Version: 1.0',
      'Content-Type: multipart/mixed; boundary="b"',
      '',
      '--b',
      'Content-Type: text/plain; charset=utf-8',
      'Content-Transfer-Encoding: quoted-printable',
      '',
      'Gr=C3=BC=C3=9Fe, caf=C3=A9 =3D soft=',
      'break',
      '--b',
      'Content-Type: application/octet-stream',
      'Content-Transfer-Encoding: base64',
      '',
      attachment.toString('base64'),
      '--b',
      'Content-Type: application/octet-stream',
      'Content-Transfer-Encoding: x-uuencode',
      '',
      'begin 644 x',
      '--b--',
      '',
    ].join('\r\n'),
  );
  before(async () => {
    r = await rig();
    await storeMessage(r, 'bob', 'INBOX', raw);
    c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
    await c.cmd('SELECT INBOX');
  });
  after(async () => {
    c?.close();
    await r?.close();
  });

  it('returns parts decoded, their decoded size, partials, and a literal8 where there is a NUL', async () => {
    assert.match(await c.cmd('CAPABILITY'), / BINARY/);
    const out = Buffer.from(await c.cmd('FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])'), 'latin1');
    const text = out.toString('latin1');
    assert.match(
      text,
      new RegExp(`BINARY\\.SIZE\\[2\\] ${attachment.length} BINARY\\[2\\] ~\\{${attachment.length}\\}\\r\\n`),
    );
    const at = out.indexOf(`~{${attachment.length}}\r\n`) + `~{${attachment.length}}\r\n`.length;
    assert.deepEqual(out.subarray(at, at + attachment.length), attachment);
    const qp = await c.cmd('FETCH 1 (BINARY.PEEK[1] BINARY.PEEK[1]<0.5>)');
    const decoded = Buffer.from('Grüße, café = softbreak', 'utf8');
    assert.ok(
      Buffer.from(qp, 'latin1').includes(
        Buffer.concat([Buffer.from(`BINARY[1] {${decoded.length}}\r\n`), decoded]),
      ),
    );
    assert.ok(
      Buffer.from(qp, 'latin1').includes(
        Buffer.concat([Buffer.from('BINARY[1]<0> {5}\r\n'), decoded.subarray(0, 5)]),
      ),
    );
    // The whole message as it is; a part that is not there, empty.
    assert.match(await c.cmd('FETCH 1 (BINARY.SIZE[])'), new RegExp(`BINARY\\.SIZE\\[\\] ${raw.length}`));
    assert.match(await c.cmd('FETCH 1 (BINARY.PEEK[9])'), /BINARY\[9\] \{0\}\r\n/);
    // An encoding it cannot undo: NO [UNKNOWN-CTE] (§4.1).
    assert.match(await c.cmd('FETCH 1 (BINARY.PEEK[3])'), /NO \[UNKNOWN-CTE\]/);
    assert.match(await c.cmd('FETCH 1 (BINARY.PEEK[1.HEADER])'), /BAD/);
    // BINARY.PEEK and BINARY.SIZE leave \Seen alone; BINARY sets it.
    assert.doesNotMatch(await c.cmd('FETCH 1 (FLAGS)'), /\\Seen/);
    assert.match(await c.cmd('FETCH 1 (BINARY[2])'), /\\Seen/);
  });

  it('takes APPEND with a literal8 holding NUL (RFC 3516 §4.4), stored byte for byte', async () => {
    const message = Buffer.concat([
      Buffer.from('Subject: nul\r\nContent-Transfer-Encoding: binary\r\n\r\n'),
      Buffer.from([0, 1, 0, 2]),
    ]);
    const out = await c.send(
      Buffer.concat([Buffer.from(`a1 APPEND INBOX ~{${message.length}+}\r\n`), message, Buffer.from('\r\n')]),
      /a1 (OK|NO|BAD)[^\r\n]*\r\n/,
    );
    assert.match(out, /a1 OK \[APPENDUID \d+ 2\]/);
    const back = Buffer.from(await c.cmd('UID FETCH 2 (BINARY.PEEK[])'), 'latin1');
    assert.ok(back.includes(Buffer.concat([Buffer.from(`BINARY[] ~{${message.length}}\r\n`), message])));
  });

  it('imapflow fetches a part decoded over BINARY', async () => {
    const said: string[] = [];
    const client = await r.client('bob', { logger: saying(said) });
    try {
      const lock = await client.getMailboxLock('INBOX');
      try {
        const m = await client.fetchOne('1', { bodyParts: ['2'] }, { binary: true });
        assert.ok(m);
        assert.deepEqual(m.bodyParts?.get('2'), attachment);
        assert.ok(
          said.some((l) => /FETCH .*BINARY\.PEEK\[2\]/.test(l)),
          said.filter((l) => /FETCH/.test(l)).join('\n'),
        );
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
  });
});

describe('IMAP extensions: OBJECTID (RFC 8474)', () => {
  let r: Rig;
  let c: RawImap;
  const mail = (h: string) => Buffer.from(`${h}\r\n\r\nbody\r\n`);
  before(async () => {
    r = await rig();
    await storeMessage(r, 'bob', 'INBOX', mail('Subject: start\r\nMessage-ID: <root@x>'));
    await storeMessage(
      r,
      'bob',
      'INBOX',
      mail('Subject: Re: start\r\nMessage-ID: <r1@x>\r\nIn-Reply-To: <root@x>\r\nReferences: <root@x>'),
    );
    await storeMessage(
      r,
      'bob',
      'INBOX',
      mail('Subject: Re: Re: start\r\nMessage-ID: <r2@x>\r\nReferences: <root@x> <r1@x>'),
    );
    await storeMessage(r, 'bob', 'INBOX', mail('Subject: other\r\nMessage-ID: <o@x>'));
    await storeMessage(r, 'bob', 'INBOX', mail('Subject: no ids'));
    c = await RawImap.connect(r.tlsPort, true);
    assert.match(await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`), /OK/);
  });
  after(async () => {
    c?.close();
    await r?.close();
  });
  const ids = (out: string) =>
    [...out.matchAll(/^\* \d+ FETCH \(UID (\d+) EMAILID \(([^)]+)\) THREADID (\(([^)]+)\)|NIL)\)/gm)].map(
      (m) => ({
        uid: Number(m[1]),
        email: m[2]!,
        thread: m[4] ?? null,
      }),
    );

  it('gives MAILBOXID, EMAILID and THREADID that survive COPY, MOVE, RENAME and a restart of the service', async () => {
    assert.match(await c.cmd('CAPABILITY'), / OBJECTID/);
    const selected = await c.cmd('SELECT INBOX');
    const inbox = /OK \[MAILBOXID \(([A-Za-z0-9_-]+)\)\]/.exec(selected)![1];
    assert.match(
      await c.cmd('STATUS INBOX (MAILBOXID MESSAGES)'),
      new RegExp(`\\(MAILBOXID \\(${inbox}\\) MESSAGES 5\\)`),
    );
    // A mailbox deleted and made again (the SQLite store may give it the same row id) has a new MAILBOXID.
    const gone = /OK \[MAILBOXID \(([A-Za-z0-9_-]+)\)\] CREATE/.exec(await c.cmd('CREATE Keep'))![1];
    assert.match(await c.cmd('DELETE Keep'), /OK/);
    const created = /OK \[MAILBOXID \(([A-Za-z0-9_-]+)\)\] CREATE/.exec(await c.cmd('CREATE Keep'))![1];
    assert.notEqual(created, gone);
    assert.notEqual(created, inbox);
    const before = ids(await c.cmd('UID FETCH 1:* (EMAILID THREADID)'));
    assert.equal(before.length, 5);
    // A thread shares one THREADID; another thread has its own; a message without ids has none.
    assert.equal(before[0]!.thread, before[1]!.thread);
    assert.equal(before[1]!.thread, before[2]!.thread);
    assert.notEqual(before[3]!.thread, before[0]!.thread);
    assert.equal(before[4]!.thread, null);
    assert.equal(new Set(before.map((m) => m.email)).size, 5);
    for (const m of before) assert.match(m.email, /^[A-Za-z0-9_-]{1,255}$/);
    // COPY and MOVE keep the EMAILID and THREADID; RENAME keeps the MAILBOXID.
    await c.cmd('UID COPY 2 Keep');
    await c.cmd('UID MOVE 3 Keep');
    assert.match(await c.cmd('RENAME Keep Kept'), /OK/);
    const kept = await c.cmd('SELECT Kept');
    assert.match(kept, new RegExp(`MAILBOXID \\(${created}\\)`));
    const moved = ids(await c.cmd('UID FETCH 1:* (EMAILID THREADID)'));
    assert.deepEqual(
      moved.map((m) => [m.email, m.thread]),
      [before[1]!, before[2]!].map((m) => [m.email, m.thread]),
    );
    // SEARCH by them (§6).
    assert.match(await c.cmd(`UID SEARCH THREADID ${before[0]!.thread}`), /^\* SEARCH 1 2\r$/m);
    assert.match(await c.cmd(`UID SEARCH EMAILID ${before[2]!.email}`), /^\* SEARCH 2\r$/m);
    assert.match(await c.cmd('UID SEARCH EMAILID bad!id'), /BAD/);
    // A new service over the same store (a restart) gives the same ids.
    const again = await rig({ wrapStore: () => r.store });
    try {
      const c2 = await RawImap.connect(again.tlsPort, true);
      await c2.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
      assert.match(await c2.cmd('SELECT INBOX'), new RegExp(`MAILBOXID \\(${inbox}\\)`));
      const after = ids(await c2.cmd('UID FETCH 1:* (EMAILID THREADID)'));
      assert.deepEqual(
        after,
        before.filter((m) => m.uid !== 3),
      );
      c2.close();
    } finally {
      await again.close();
    }
  });
});

describe('IMAP4rev2 (RFC 9051) after ENABLE IMAP4rev2', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    for (let i = 1; i <= 4; i++)
      await storeMessage(r, 'bob', 'INBOX', sample(`rev2 ${i}`), {
        flags: i === 2 ? ['\\Seen', '\\Deleted'] : [],
      });
  });
  after(() => r?.close());

  it('drops \\Recent, RECENT and UNSEEN, lists the mailbox at SELECT, answers SEARCH with ESEARCH and STATUS with DELETED', async () => {
    const c = await RawImap.connect(r.tlsPort, true);
    await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
    assert.match(await c.cmd('CAPABILITY'), /\* CAPABILITY IMAP4rev1 IMAP4rev2 /);
    assert.match(await c.cmd('ENABLE IMAP4rev2'), /^\* ENABLED IMAP4rev2\r\n/m);
    const selected = await c.cmd('SELECT INBOX');
    assert.match(selected, /^\* 4 EXISTS\r\n/m);
    assert.match(selected, /^\* LIST \(\) "\/" INBOX\r\n/m);
    assert.doesNotMatch(selected, /RECENT|UNSEEN/);
    assert.doesNotMatch(await c.cmd('FETCH 1:* (FLAGS)'), /\\Recent/);
    // SEARCH without RETURN is RETURN (ALL): an ESEARCH response (§6.4.4).
    assert.deepEqual(
      (await c.cmd('SEARCH UNSEEN')).split('\r\n').filter((l) => l.startsWith('* ')),
      ['* ESEARCH (TAG "t6") ALL 1,3:4'],
    );
    assert.match(await c.cmd('UID SEARCH SUBJECT nothing'), /^\* ESEARCH \(TAG "t7"\) UID\r\n/m);
    assert.match(await c.cmd('STATUS INBOX (MESSAGES DELETED)'), /\* STATUS INBOX \(MESSAGES 4 DELETED 1\)/);
    // A message arriving is EXISTS alone, without RECENT.
    await c.send('i1 IDLE\r\n', /\+ [^\r\n]*\r\n/);
    await storeMessage(r, 'bob', 'INBOX', sample('rev2 5'));
    const news = await c.send('', /\* 5 EXISTS\r\n/);
    assert.doesNotMatch(news, /RECENT/);
    await c.send('DONE\r\n', /i1 OK/);
    c.close();
  });

  it('imapflow signs in with IMAP4rev2 enabled and searches and fetches as before', async () => {
    const said: string[] = [];
    const client = await r.client('bob', { logger: saying(said) });
    try {
      assert.ok(
        said.some((l) => /ENABLE .*IMAP4rev2/i.test(l)),
        said.join('\n'),
      );
      const lock = await client.getMailboxLock('INBOX');
      try {
        assert.deepEqual(await client.search({ seen: false }, { uid: true }), [1, 3, 4, 5]);
        assert.deepEqual(await client.search({ deleted: true }), [2]);
        const m = await client.fetchOne('2', { flags: true, envelope: true });
        assert.ok(m);
        assert.deepEqual([...(m.flags ?? [])].sort(), ['\\Deleted', '\\Seen']);
        assert.equal(m.envelope?.subject, 'rev2 2');
      } finally {
        lock.release();
      }
    } finally {
      await client.logout();
    }
  });
});

describe('IMAP extensions: UNAUTHENTICATE (RFC 8437)', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    await storeMessage(r, 'bob', 'INBOX', sample('for bob'));
  });
  after(() => r?.close());

  it('signs out and lets another user sign in on the same connection, with nothing of the first left', async () => {
    const c = await RawImap.connect(r.tlsPort, true);
    await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
    assert.match(await c.cmd('CAPABILITY'), / UNAUTHENTICATE/);
    await c.cmd('ENABLE QRESYNC IMAP4rev2');
    assert.match(await c.cmd('SELECT INBOX'), /\* 1 EXISTS/);
    assert.match(await c.cmd('UNAUTHENTICATE'), /t5 OK UNAUTHENTICATE completed/);
    assert.match(await c.cmd('SELECT INBOX'), /t6 BAD/);
    assert.match(await c.cmd('CAPABILITY'), /AUTH=PLAIN/);
    assert.match(await c.cmd(`LOGIN ann@example.org "${PASSWORD}"`), /t8 OK/);
    const ann = await c.cmd('SELECT INBOX');
    assert.match(ann, /\* 0 EXISTS/);
    // What bob ENABLEd is off: rev1 answers (RECENT) and no QRESYNC without ENABLE.
    assert.match(ann, /\* 0 RECENT/);
    assert.match(await c.cmd('SELECT INBOX (QRESYNC (1 1))'), /BAD ENABLE QRESYNC first/);
    assert.match(await c.cmd('UNAUTHENTICATE'), /OK/);
    assert.match(await c.cmd('UNAUTHENTICATE'), /BAD/);
    c.close();
  });
});

describe('IMAP extensions: PREVIEW (RFC 8970)', () => {
  let r: Rig;
  let c: RawImap;
  const long = `${'word '.repeat(60)}end`;
  before(async () => {
    r = await rig();
    // 1: quoted-printable text with a quoted reply; 2: HTML only; 3: an attachment alone; 4: long text.
    await storeMessage(
      r,
      'bob',
      'INBOX',
      Buffer.from(
        'Subject: a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 at  noon?\r\n> earlier words\r\nBob\r\n',
      ),
    );
    await storeMessage(
      r,
      'bob',
      'INBOX',
      Buffer.from(
        'Subject: b\r\nContent-Type: text/html\r\n\r\n<html><style>p{color:red}</style><p>Hello&nbsp;<b>there</b> &amp; you</p></html>\r\n',
      ),
    );
    await storeMessage(
      r,
      'bob',
      'INBOX',
      Buffer.from(
        'Subject: c\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n',
      ),
    );
    await storeMessage(r, 'bob', 'INBOX', Buffer.from(`Subject: d\r\n\r\n${long}\r\n`));
    c = await RawImap.connect(r.tlsPort, true);
    await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
    await c.cmd('SELECT INBOX');
  });
  after(async () => {
    c?.close();
    await r?.close();
  });

  it('gives the start of the text, decoded, without quotes, markup or attachments, cut to 200 characters', async () => {
    assert.match(await c.cmd('CAPABILITY'), / PREVIEW/);
    const out = Buffer.from(await c.cmd('FETCH 1:4 (PREVIEW)'), 'latin1').toString('utf8');
    assert.match(out, /\* 1 FETCH \(PREVIEW \{\d+\}\r\nCafé at noon\? Bob\)/);
    assert.match(out, /\* 2 FETCH \(PREVIEW "Hello there & you"\)/);
    assert.match(out, /\* 3 FETCH \(PREVIEW ""\)/);
    assert.match(out, new RegExp(`\\* 4 FETCH \\(PREVIEW "${long.slice(0, 200).trimEnd()}"\\)`));
    // Kept with the message when it was stored: listing previews reads no message body.
    const stored = await r.store.getMessage((await r.store.getMailbox(r.accounts.bob!, 'INBOX'))!.id, 2);
    assert.equal(stored!.structure.preview, 'Hello there & you');
  });

  it('makes the preview of a message stored without one, unless LAZY says NIL will do', async () => {
    const raw = Buffer.from('Subject: old\r\n\r\nfrom before previews\r\n');
    const { preview: _dropped, ...structure } = parseMessage(raw);
    const m = await storeMessage(r, 'bob', 'INBOX', raw, { structure });
    await c.cmd('NOOP');
    assert.match(await c.cmd(`UID FETCH ${m.uid} (PREVIEW)`), /PREVIEW "from before previews"/);
    assert.match(await c.cmd(`UID FETCH ${m.uid} (PREVIEW (LAZY))`), /PREVIEW NIL/);
    assert.match(await c.cmd('FETCH 1 (PREVIEW (LAZY))'), /PREVIEW \{/);
    assert.match(
      await c.cmd('FETCH 1 PREVIEW (CHANGEDSINCE 1)'),
      // A lone PREVIEW, then the FETCH modifiers (not taken for PREVIEW's own).
      /\* 1 FETCH \(PREVIEW \{\d+\}\r\n[^\r\n]* MODSEQ \(\d+\)\)/,
    );
    assert.match(await c.cmd('FETCH 1 (PREVIEW (EAGER))'), /BAD/);
  });
});

describe('IMAP extensions: SAVEDATE (RFC 8514)', () => {
  let r: Rig;
  before(async () => {
    r = await rig();
    await storeMessage(r, 'bob', 'INBOX', sample('from 2020'), {
      internalDate: new Date('2020-03-04T05:06:07Z'),
    });
  });
  after(() => r?.close());

  it('gives when a message was stored in the mailbox, apart from INTERNALDATE, in FETCH and SEARCH', async () => {
    const c = await RawImap.connect(r.tlsPort, true);
    await c.cmd(`LOGIN bob@example.org "${PASSWORD}"`);
    assert.match(await c.cmd('CAPABILITY'), / SAVEDATE/);
    await c.cmd('SELECT INBOX');
    const fetched = await c.cmd('FETCH 1 (INTERNALDATE SAVEDATE)');
    assert.match(
      fetched,
      /INTERNALDATE "04-Mar-2020 05:06:07 \+0000" SAVEDATE "\d\d-\w{3}-\d{4} \d\d:\d\d:\d\d \+0000"/,
    );
    assert.doesNotMatch(fetched, /SAVEDATE "04-Mar-2020/);
    // The day it was saved, as the server wrote it (no midnight between the two readings of a clock).
    const day = /SAVEDATE "(\d\d-\w{3}-\d{4})/.exec(fetched)![1]!;
    assert.match(await c.cmd(`SEARCH SAVEDON ${day}`), /^\* SEARCH 1\r$/m);
    assert.match(await c.cmd('SEARCH SAVEDBEFORE 1-Jan-2021'), /^\* SEARCH\r$/m);
    assert.match(await c.cmd('SEARCH BEFORE 1-Jan-2021'), /^\* SEARCH 1\r$/m);
    assert.match(await c.cmd('SEARCH SAVEDATESUPPORTED'), /^\* SEARCH 1\r$/m);
    // A copy is saved anew in its mailbox and keeps its INTERNALDATE.
    await c.cmd('COPY 1 Archive');
    await c.cmd('SELECT Archive');
    assert.match(
      await c.cmd('FETCH 1 (INTERNALDATE SAVEDATE)'),
      /INTERNALDATE "04-Mar-2020 05:06:07 \+0000" SAVEDATE "(?!04-Mar-2020)/,
    );
    assert.match(await c.cmd(`SEARCH SAVEDSINCE ${day}`), /^\* SEARCH 1\r$/m);
    c.close();
  });
});
