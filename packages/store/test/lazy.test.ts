// Reading a message's sort fields out of its stored structure's JSON without parsing all of it: the same
// answer as a whole parse for any message, and null (never a throw) for text that is not a structure.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseMessage } from '@mailwerk/mime';
import fc from 'fast-check';
import { packSortFields, sortFieldsOf, unpackSortFields } from '../src/lazy.ts';

const stored = (raw: string) => JSON.stringify(parseMessage(Buffer.from(raw)));

describe('sort fields from a stored structure', () => {
  it('reads them as a whole parse would, keys named sort elsewhere in the message notwithstanding', () => {
    const raw =
      'Subject: ",\\"sort\\":{\r\nContent-Type: text/plain; sort="x"\r\nReferences: <a@b>\r\n\r\nbody\r\n';
    assert.deepEqual(sortFieldsOf(stored(raw)), parseMessage(Buffer.from(raw)).sort);
  });

  it('reads them whole when they are not the last key, and gives null where there are none', () => {
    const { sort, ...rest } = parseMessage(Buffer.from('Subject: first\r\n\r\nx'));
    assert.deepEqual(sortFieldsOf(JSON.stringify({ sort, ...rest })), sort);
    assert.equal(sortFieldsOf(JSON.stringify(rest)), null);
    for (const damaged of ['not json', '', '{"sort":', ',"sort":{}}', null, 42])
      assert.equal(sortFieldsOf(damaged), null, String(damaged));
  });

  it('for any header: the same as parsing the whole structure (property)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 }), (subject, refs) => {
        const raw = `Subject: ${subject}\r\nReferences: ${refs}\r\nFrom: ${refs}\r\n\r\nx`;
        assert.deepEqual(sortFieldsOf(stored(raw)), parseMessage(Buffer.from(raw)).sort);
      }),
      { numRuns: 300 },
    );
  });
});

describe('sort fields packed as a store keeps them beside a message', () => {
  it('unpack as they were packed, for any header, source routes included (property)', () => {
    fc.assert(
      fc.property(
        fc.string({ maxLength: 200 }),
        fc.string({ maxLength: 200 }),
        fc.string({ maxLength: 100 }),
        (subject, refs, from) => {
          const raw = `Subject: ${subject}\r\nReferences: ${refs}\r\nFrom: ${from}\r\nTo: <@route.example:a@b.example>\r\n\r\nx`;
          const sort = parseMessage(Buffer.from(raw)).sort!;
          assert.deepEqual(unpackSortFields(packSortFields(sort)), sort);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('read fields kept before the subject key was as without it', () => {
    const { subjectKey: _, ...older } = parseMessage(Buffer.from('Subject: Re: x\r\n\r\nx')).sort!;
    assert.deepEqual(unpackSortFields(packSortFields(older)), { ...older, subjectKey: undefined });
  });

  it('give null, never a throw, for what is not packed fields', () => {
    const good = JSON.parse(
      packSortFields(parseMessage(Buffer.from('Subject: a\r\nFrom: b@c\r\n\r\nx')).sort!),
    );
    const damaged: unknown[] = [
      'not json',
      '',
      null,
      42,
      '{"sent":1}',
      '[]',
      JSON.stringify([2, ...good.slice(1)]),
      JSON.stringify(good.slice(0, 8)),
      JSON.stringify(good.map((v: unknown, i: number) => (i === 2 ? 7 : v))),
      JSON.stringify(good.map((v: unknown, i: number) => (i === 4 ? ['only a name'] : v))),
      JSON.stringify(good.map((v: unknown, i: number) => (i === 8 ? [1, 2] : v))),
    ];
    for (const text of damaged) assert.equal(unpackSortFields(text), null, String(text));
  });
});
