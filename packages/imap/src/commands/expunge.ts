/** EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1). */
import { readSequenceSet } from '../protocol/sequence.ts';
import { expungeDeleted, readOnlyGuard } from './select.ts';
import { type Command, SELECTED } from './types.ts';
import { resolveSet, selected } from './util.ts';

function expunge(byUid: boolean): Command {
  return {
    states: SELECTED,
    async run(s, c) {
      const sel = selected(s);
      const only = byUid ? resolveSet(sel, readSequenceSet(c), true) : null;
      c.end();
      readOnlyGuard(sel, 'EXPUNGE');
      for (const u of await expungeDeleted(s, sel, only)) sel.expunged.add(u);
      sel.flushExpunges(s);
      return `${byUid ? 'UID EXPUNGE' : 'EXPUNGE'} completed`;
    },
  };
}

export const EXPUNGE = expunge(false);
export const UID_EXPUNGE = expunge(true);
