// Base subjects (RFC 5256 §2.1) and the i;unicode-casemap collation (RFC 5051) SORT and THREAD compare by,
// and the subject key kept with a message's sort fields.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { baseSubject, casemap, casemapText, subjectKey } from '../src/collation.ts';
import { parseMessage } from '../src/index.ts';

describe('base subject (RFC 5256 §2.1)', () => {
  const table: Array<[string, string, boolean]> = [
    ['Hello', 'Hello', false],
    ['Re: Hello', 'Hello', true],
    ['RE: re: Fwd: Hello', 'Hello', true],
    ['Fw: Hello', 'Hello', true],
    ['Re[2]: Hello', 'Hello', true],
    ['[list] Re: Hello', 'Hello', true],
    ['[list] Hello', 'Hello', false],
    ['[list]', '[list]', false],
    ['Hello (fwd)', 'Hello', true],
    ['Hello (fwd) (FWD)  ', 'Hello', true],
    ['[Fwd: Re: Hello]', 'Hello', true],
    ['[fwd: [list] Hello (fwd)]', 'Hello', true],
    ['  Hello \t  world  ', 'Hello world', false],
    ['Re:Re:Re:', '', true],
    ['Reply: about', 'Reply: about', false],
    ['', '', false],
  ];
  for (const [subject, base, reply] of table)
    it(`${JSON.stringify(subject)} → ${JSON.stringify(base)}`, () =>
      assert.deepEqual(baseSubject(subject), { base, reply }));

  it('takes linear time on long leaders and blobs', () => {
    const t = Date.now();
    baseSubject(`${'[x]'.repeat(50_000)}Re: a`);
    baseSubject(`${'Re: '.repeat(50_000)}a`);
    baseSubject(`${'[fwd: '.repeat(10_000)}a${']'.repeat(10_000)}`);
    assert.ok(Date.now() - t < 500, `${Date.now() - t} ms`);
  });
});

describe('i;unicode-casemap (RFC 5051)', () => {
  it('ignores case and compatibility forms, and compares what remains by code point', () => {
    assert.equal(Buffer.compare(casemap('apple'), casemap('APPLE')), 0);
    assert.equal(Buffer.compare(casemap('ﬁle'), casemap('FILE')), 0);
    assert.equal(Buffer.compare(casemap('e\u0301'), casemap('É')), 0);
    assert.ok(Buffer.compare(casemap('a'), casemap('B')) < 0);
    // é decomposes to E and a combining accent: after E, before F.
    assert.ok(Buffer.compare(casemap('e'), casemap('é')) < 0);
    assert.ok(Buffer.compare(casemap('é'), casemap('f')) < 0);
  });
});

describe('the subject key kept with the sort fields', () => {
  it('is the casemapped base subject of the decoded Subject:', () => {
    const raw = Buffer.from('Subject: Re: [list] =?UTF-8?Q?=C3=A9t=C3=A9?= (fwd)\r\n\r\nx\r\n');
    assert.equal(parseMessage(raw).sort?.subjectKey, casemapText('été'));
    assert.equal(parseMessage(Buffer.from('From: a@b.c\r\n\r\nx\r\n')).sort?.subjectKey, '');
  });

  it('is the same for a subject, its replies and forwards, in any case', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9äöüß][a-zA-Z0-9äöüß ]{0,30}[a-zA-Z0-9äöüß]$/), (s) => {
        const key = subjectKey(s);
        assert.equal(subjectKey(`Re: Fwd: ${s.toLowerCase()}`), key);
        assert.equal(subjectKey(`[list] RE: ${s.toUpperCase()} (fwd)`), key);
        assert.equal(subjectKey(`[Fwd: ${s}]`), key);
      }),
      { numRuns: 300 },
    );
  });
});
