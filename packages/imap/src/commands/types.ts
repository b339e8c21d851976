/** The command table's entry: which states allow it and what it does. */
import type { Cursor } from '../protocol/cursor.ts';
import type { Session, State } from '../session.ts';

export interface CommandInfo {
  tag: string;
  /** Called as `UID FETCH`, `UID STORE` …: sets and responses are in UIDs. */
  uid: boolean;
}

export interface Command {
  states: Array<State['kind']>;
  /** RFC 3501 §7.4.1: no untagged EXPUNGE while it runs (FETCH, STORE, SEARCH and their UID forms). */
  noExpunge?: boolean;
  /** Reads its arguments from the cursor; returns the text of the tagged OK, or null when it answered itself. */
  run(s: Session, c: Cursor, info: CommandInfo): Promise<string | null>;
}

export const ANY: Array<State['kind']> = ['not-authenticated', 'authenticated', 'selected'];
export const AUTHENTICATED: Array<State['kind']> = ['authenticated', 'selected'];
export const SELECTED: Array<State['kind']> = ['selected'];
