/**
 * NOTIFY (RFC 5465): what the client asked to be told of, read from the
 * command (`readNotify`) and matched against a mailbox and an event kind
 * (`NotifySpec.wants`). The session (session.ts) turns matched events into
 * responses: for the selected mailbox EXISTS/EXPUNGE/FETCH as they happen
 * (held expunges with SELECTED-DELAYED), for others STATUS, for names and
 * subscriptions LIST.
 *
 * Offered events: MessageNew (with FETCH attributes for the selected
 * mailbox), MessageExpunge, FlagChange, MailboxName, SubscriptionChange.
 * AnnotationChange and the METADATA events are not (there is no ANNOTATE or
 * METADATA here): asking for them is NO [BADEVENT (…)], as §3.1 requires.
 * INBOXES is PERSONAL here (§6.3): a Sieve script may file into any
 * mailbox, so any of them may receive mail.
 */
import { bad, no } from './errors.ts';
import type { Cursor } from './protocol/cursor.ts';
import { type FetchItem, readFetchItems } from './protocol/fetch-parse.ts';

export const EVENTS = [
  'MessageNew',
  'MessageExpunge',
  'FlagChange',
  'MailboxName',
  'SubscriptionChange',
] as const;
export type NotifyEvent = (typeof EVENTS)[number];
const MESSAGE_EVENTS = new Set<string>(['MessageNew', 'MessageExpunge', 'FlagChange', 'AnnotationChange']);
const UNSUPPORTED = new Set(['AnnotationChange', 'MailboxMetadataChange', 'ServerMetadataChange']);

export type Filter =
  | 'SELECTED'
  | 'SELECTED-DELAYED'
  | 'INBOXES'
  | 'PERSONAL'
  | 'SUBSCRIBED'
  | 'SUBTREE'
  | 'MAILBOXES';

export interface EventGroup {
  filter: Filter;
  /** SUBTREE and MAILBOXES: the mailbox names (raw, as the client wrote them; decoded by the caller). */
  names: string[];
  /** Empty: NONE, nothing is told for these mailboxes. */
  events: Set<NotifyEvent>;
  /** MessageNew's FETCH attributes (selected mailbox only). */
  fetch: FetchItem[] | null;
}

export interface NotifyRequest {
  status: boolean;
  groups: EventGroup[];
}

const FILTERS = new Set([
  'SELECTED',
  'SELECTED-DELAYED',
  'INBOXES',
  'PERSONAL',
  'SUBSCRIBED',
  'SUBTREE',
  'MAILBOXES',
]);
const MAX_NAMES = 1000;

/** `NONE` or `SET [STATUS] event-group *(SP event-group)` (§8), the command name taken. */
export function readNotify(c: Cursor): NotifyRequest {
  const form = c.word();
  if (form === 'NONE') {
    c.end();
    return { status: false, groups: [] };
  }
  if (form !== 'SET') throw bad('NOTIFY SET or NOTIFY NONE');
  c.space();
  let status = false;
  if (c.peekWord() === 'STATUS') {
    c.word();
    c.space();
    status = true;
  }
  const groups: EventGroup[] = [];
  for (;;) {
    groups.push(readGroup(c));
    if (!c.take(' ')) break;
  }
  c.end();
  check(groups);
  return { status, groups };
}

function readGroup(c: Cursor): EventGroup {
  c.expect('(');
  const filter = c.word() as Filter;
  if (!FILTERS.has(filter)) throw bad(`Unknown mailbox filter ${filter.slice(0, 32)}`);
  const names: string[] = [];
  if (filter === 'SUBTREE' || filter === 'MAILBOXES') {
    c.space();
    if (c.peek() === '(') c.list(() => names.push(c.astring()));
    else names.push(c.astring());
    if (names.length === 0 || names.length > MAX_NAMES)
      throw bad(`${filter} takes 1 to ${MAX_NAMES} mailboxes`);
  }
  c.space();
  const events = new Set<NotifyEvent>();
  let fetch: FetchItem[] | null = null;
  if (c.peekWord() === 'NONE') c.word();
  else {
    const unsupported: string[] = [];
    c.list(() => {
      const name = c.atom();
      const known = EVENTS.find((e) => e.toLowerCase() === name.toLowerCase());
      if (known === 'MessageNew' && c.rest().startsWith(' (')) {
        // MessageNew (fetch-att …): what to FETCH of each new message in the selected mailbox (§5.2).
        c.space();
        fetch = readFetchItems(c);
      }
      if (known) events.add(known);
      else if ([...UNSUPPORTED].some((u) => u.toLowerCase() === name.toLowerCase())) unsupported.push(name);
      else throw bad(`Unknown event ${name.slice(0, 32)}`);
    });
    // §3.1: an event the server does not offer is NO (not BAD), naming those it offers.
    if (unsupported.length) throw no(`BADEVENT (${EVENTS.join(' ')})`, `${unsupported[0]} is not offered`);
    if (events.size === 0) throw bad('An event list needs at least one event; NONE says none');
  }
  c.expect(')');
  return { filter, names, events, fetch };
}

/** The rules of §5 and §6.1 that make a NOTIFY SET BAD. */
function check(groups: EventGroup[]): void {
  let selected = 0;
  for (const g of groups) {
    const e = g.events;
    if (e.has('MessageNew') !== e.has('MessageExpunge'))
      throw bad('MessageNew and MessageExpunge go together (RFC 5465 §5)');
    if (e.has('FlagChange') && !e.has('MessageNew'))
      throw bad('FlagChange needs MessageNew and MessageExpunge (RFC 5465 §5)');
    if (g.filter === 'SELECTED' || g.filter === 'SELECTED-DELAYED') {
      if (++selected > 1) throw bad('One of SELECTED and SELECTED-DELAYED at most (RFC 5465 §6.1)');
      for (const ev of e)
        if (!MESSAGE_EVENTS.has(ev)) throw bad(`${ev} is not a message event; SELECTED takes only those`);
    } else if (g.fetch) throw bad('FETCH attributes of MessageNew are for SELECTED only');
  }
}

/** What a mailbox is, for matching: its name and whether it is subscribed. */
export interface MailboxFacts {
  name: string;
  subscribed: boolean;
}

const under = (name: string, top: string) => name === top || name.startsWith(`${top}/`);

/**
 * A NOTIFY SET in force, names decoded. `wants(mailbox, event)`: the groups in order whose filter
 * takes the mailbox; the first that names the event says yes, a NONE among them says no.
 */
export class NotifySpec {
  readonly groups: Array<EventGroup & { decoded: string[] }>;

  constructor(groups: Array<EventGroup & { decoded: string[] }>) {
    this.groups = groups;
  }

  /** The group for the selected mailbox, or null: SELECTED NONE, as when none is named (§3.1). */
  get selected(): (EventGroup & { decoded: string[] }) | null {
    const g = this.groups.find((x) => x.filter === 'SELECTED' || x.filter === 'SELECTED-DELAYED');
    return g?.events.size ? g : null;
  }

  wants(mb: MailboxFacts, event: NotifyEvent, isSelected: boolean): boolean {
    for (const g of this.groups) {
      if (g.filter === 'SELECTED' || g.filter === 'SELECTED-DELAYED') continue;
      // Message events of the selected mailbox are SELECTED's alone; its name and subscription are not.
      if (isSelected && MESSAGE_EVENTS.has(event)) continue;
      const takes =
        g.filter === 'PERSONAL' ||
        g.filter === 'INBOXES' ||
        (g.filter === 'SUBSCRIBED' && mb.subscribed) ||
        (g.filter === 'SUBTREE' && g.decoded.some((top) => under(mb.name, top))) ||
        (g.filter === 'MAILBOXES' && g.decoded.includes(mb.name));
      if (!takes) continue;
      // NONE ends the search for this mailbox; a group without this event leaves it to the next (§6).
      if (g.events.size === 0) return false;
      if (g.events.has(event)) return true;
    }
    return false;
  }
}
