/**
 * Search and sort results the client keeps current (CONTEXT=SEARCH and
 * CONTEXT=SORT, RFC 5267 §4.3): after SEARCH or SORT with RETURN (UPDATE),
 * the server tells the client, by unsolicited `ESEARCH (TAG "…") ADDTO /
 * REMOVEFROM`, how the result of that command changes as messages arrive,
 * are expunged or change flags, until CANCELUPDATE or the mailbox is left.
 *
 * Here: the pure part, what turns one result into the next (`contextChanges`,
 * tested by applying it back as a client would: test/harness.ts); the Selected mailbox keeps the contexts and
 * runs them again when the mailbox changed (selected.ts).
 *
 * Positions (§4.3.3, §4.3.4): a SEARCH result is in mailbox order and its
 * updates carry position 0 (the client keeps mailbox order); a SORT result
 * is in its sort order and each change names the 1-based position where it
 * applies, in the order the client applies them: every removal first, from
 * the top, then every addition, from the top.
 */

/** One result kept current. */
export interface SearchContext {
  tag: string;
  uid: boolean;
  /** SORT (positions count) or SEARCH (position 0). */
  sorted: boolean;
  /** The UIDs as the client holds them, in its order. */
  result: number[];
  /** The UIDs that match now, in the context's order. */
  run(): Promise<number[]>;
}

/** How many contexts one session may keep; one more is refused with NOUPDATE (§4.3.1: at least one). */
export const MAX_CONTEXTS = 5;

/** Runs of results removed or added: [position, ids in the context's order]. */
export interface ContextChanges {
  removed: Array<[number, number[]]>;
  added: Array<[number, number[]]>;
}

const sameOrder = (a: number[], b: number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

/**
 * What turns `before` into `after`. For a SORT context a message that stays keeps its place relative to
 * the others (its sort keys are its content's, which does not change); were that ever not so, everything
 * is removed and added again, which is long but right.
 */
export function contextChanges(before: number[], after: number[], sorted: boolean): ContextChanges {
  const afterSet = new Set(after);
  const beforeSet = new Set(before);
  if (!sorted) {
    const up = (xs: number[]) => xs.sort((a, b) => a - b);
    const gone = up(before.filter((x) => !afterSet.has(x)));
    const come = up(after.filter((x) => !beforeSet.has(x)));
    return { removed: gone.length ? [[0, gone]] : [], added: come.length ? [[0, come]] : [] };
  }
  let keep = (x: number) => afterSet.has(x) && beforeSet.has(x);
  if (!sameOrder(before.filter(keep), after.filter(keep))) keep = () => false;
  const runs = (list: number[], changed: (x: number) => boolean, shift: boolean) => {
    const out: Array<[number, number[]]> = [];
    let applied = 0;
    for (let i = 0; i < list.length; i++) {
      if (!changed(list[i]!)) continue;
      // Removals: the items before this one that were removed already are no longer there.
      const position = shift ? i + 1 - applied : i + 1;
      const run = [list[i]!];
      while (i + 1 < list.length && changed(list[i + 1]!)) run.push(list[++i]!);
      out.push([position, run]);
      applied += run.length;
    }
    return out;
  };
  return {
    removed: runs(before, (x) => !keep(x), true),
    added: runs(after, (x) => !keep(x), false),
  };
}
