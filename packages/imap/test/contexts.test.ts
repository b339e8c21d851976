// What turns a kept search or sort result into the next (RFC 5267 §4.3.3–4): the RFC's own equivalences,
// and for any two results, updates that a client applying them pair by pair turns into exactly the second.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { contextChanges } from '../src/contexts.ts';
import { applyChanges } from './harness.ts';

describe('context updates (CONTEXT=SEARCH, CONTEXT=SORT)', () => {
  it('gives a SEARCH result position 0 and the sets in mailbox order', () => {
    assert.deepEqual(contextChanges([2, 5, 9], [5, 7, 9, 3], false), {
      removed: [[0, [2]]],
      added: [[0, [3, 7]]],
    });
    assert.deepEqual(contextChanges([1, 2], [1, 2], false), { removed: [], added: [] });
  });

  it('gives a SORT result the positions where runs go, removals first (RFC 5267 §4.3.3 example)', () => {
    // §4.3.3: 2734:2735 becomes 2731:2735 by one insertion at position 1.
    assert.deepEqual(contextChanges([2734, 2735], [2731, 2732, 2733, 2734, 2735], true), {
      removed: [],
      added: [[1, [2731, 2732, 2733]]],
    });
    // Sorted 9 4 7 1 → 9 3 7 8 1: 4 (position 2) goes; 3 comes at 2, 8 at 4.
    assert.deepEqual(contextChanges([9, 4, 7, 1], [9, 3, 7, 8, 1], true), {
      removed: [[2, [4]]],
      added: [
        [2, [3]],
        [4, [8]],
      ],
    });
    // Two runs removed: the second's position counts the first as gone.
    assert.deepEqual(contextChanges([1, 2, 3, 4, 5, 6], [3, 6], true).removed, [
      [1, [1, 2]],
      [2, [4, 5]],
    ]);
  });

  it('removes and adds everything when what stays changed its order (never expected, still right)', () => {
    const c = contextChanges([1, 2, 3], [3, 2, 1], true);
    assert.deepEqual(applyChanges([1, 2, 3], c, true), [3, 2, 1]);
  });

  it('for any two results: the client applying the updates holds the second (property)', () => {
    const ids = fc.uniqueArray(fc.integer({ min: 1, max: 60 }), { maxLength: 30 });
    fc.assert(
      fc.property(ids, ids, fc.boolean(), (a, b, sorted) => {
        const before = sorted ? a : [...a].sort((x, y) => x - y);
        const after = sorted ? b : [...b].sort((x, y) => x - y);
        const changes = contextChanges(before, after, sorted);
        assert.deepEqual(applyChanges(before, changes, sorted), after);
        if (!sorted) for (const [pos] of [...changes.removed, ...changes.added]) assert.equal(pos, 0);
      }),
      { numRuns: 500 },
    );
  });

  it('for a sorted result whose kept messages keep their order: only what changed is named (property)', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 1, max: 200 }), { maxLength: 40 }),
        fc.func(fc.boolean()),
        fc.func(fc.boolean()),
        (all, inBefore, inAfter) => {
          const before = all.filter((x) => inBefore(x));
          const after = all.filter((x) => inAfter(x));
          const changes = contextChanges(before, after, true);
          const named = [...changes.removed, ...changes.added].flatMap(([, xs]) => xs);
          assert.equal(
            named.length,
            before.filter((x) => !inAfter(x)).length + after.filter((x) => !inBefore(x)).length,
          );
          assert.deepEqual(applyChanges(before, changes, true), after);
        },
      ),
      { numRuns: 300 },
    );
  });
});
