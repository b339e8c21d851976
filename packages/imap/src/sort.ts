/**
 * SORT and THREAD (RFC 5256) with SORT=DISPLAY (RFC 5957): sort keys and the
 * ORDEREDSUBJECT and REFERENCES threading algorithms, as pure functions over
 * what each message says (SortFacts); base subjects and the i;unicode-casemap
 * collation (RFC 5051) are @mailwerk/mime's (collation.ts). The command
 * (commands/sort.ts) gathers the facts; nothing here reads the store.
 *
 * Bounds: subjects and names are cut to MAX_SORT_TEXT characters before any work,
 * a message's references to MAX_REFERENCES ids; everything is linear in the
 * mailbox (plus n log n for sorting) and nothing recurses on message data
 * (the thread tree is walked with explicit stacks).
 */
import {
  ancestors,
  baseSubject,
  casemap,
  casemapText,
  type EnvelopeAddress,
  messageIds,
  parseHeaderBlock,
  type SortFields,
  subjectKey as subjectText,
} from '@mailwerk/mime';

/** What sorting and threading need of one message: its stored sort fields and its place in the mailbox. */
export interface SortFacts extends Omit<SortFields, 'sent'> {
  seq: number;
  uid: number;
  size: number;
  /** INTERNALDATE, ms. */
  arrival: number;
  /** The Date: field's instant, or INTERNALDATE when there is none or it does not parse (RFC 5256 §2.2). */
  sent: number;
  keys?: Record<string, Buffer>;
}

/** A sort key of a message, made once and kept in its facts when they carry a place for it. */
function keyOf(f: SortFacts, name: string, make: () => Buffer): Buffer {
  if (!f.keys) return make();
  let k = f.keys[name];
  if (!k) {
    k = make();
    f.keys[name] = k;
  }
  return k;
}

/** The collation key of the base subject: kept with the message's sort fields, made here for older ones. */
const subjectKey = (f: SortFacts) =>
  keyOf(f, 'SUBJECT', () => Buffer.from(f.subjectKey ?? subjectText(f.subject), 'utf8'));

/** The part of SortFacts that depends only on the message's bytes (kept by blob). */
export interface ContentFacts extends Omit<SortFields, 'references'> {
  /** Null until a THREAD=REFERENCES needed them (a message stored before they were kept: a read of its header). */
  references: string[] | null;
  /** Sort keys made from the above, kept with them: the next SORT of the mailbox does not make them again. */
  keys?: Record<string, Buffer>;
}

/**
 * A header's thread ancestry (RFC 5256 §3 REFERENCES step 1, RFC 5322 §3.6.4): the ids of References,
 * else the first of In-Reply-To; and the message's own Message-ID.
 */
export function ancestryOf(header: string): { references: string[]; messageId: string | null } {
  let references: string | undefined;
  let inReplyTo: string | undefined;
  let own: string | undefined;
  for (const f of parseHeaderBlock(header)) {
    if (f.key === 'references') references ??= f.value;
    else if (f.key === 'in-reply-to') inReplyTo ??= f.value;
    else if (f.key === 'message-id') own ??= f.value;
  }
  return {
    references: ancestors(references, inReplyTo),
    messageId: messageIds(own, 1)[0] ?? null,
  };
}

export const SORT_KEYS = new Set([
  'ARRIVAL',
  'CC',
  'DATE',
  'FROM',
  'SIZE',
  'SUBJECT',
  'TO',
  'DISPLAYFROM',
  'DISPLAYTO',
]);

export interface SortKey {
  key: string;
  reverse: boolean;
}

const localPart = (a: EnvelopeAddress | null) => {
  if (!a) return '';
  const at = a.address.lastIndexOf('@');
  return at === -1 ? a.address : a.address.slice(0, at);
};

/** RFC 5957 §3: the display name when there is one, else the address (mailbox@host). */
const display = (a: EnvelopeAddress | null, decode: (s: string) => string) => {
  if (!a) return '';
  const name = decode(a.name).trim();
  return name || a.address;
};

/**
 * The messages in the order the criteria give; ties by sequence number (RFC 5256 §3: the final tie-breaker,
 * whatever REVERSE says). `decode` turns encoded words of a display name into text.
 */
export function sortMessages(
  facts: SortFacts[],
  criteria: SortKey[],
  decode: (s: string) => string,
): SortFacts[] {
  // Each key computed once per message, not once per comparison.
  const keys = facts.map((f) =>
    criteria.map(({ key }): number | Buffer => {
      switch (key) {
        case 'ARRIVAL':
          return f.arrival;
        case 'DATE':
          return f.sent;
        case 'SIZE':
          return f.size;
        case 'SUBJECT':
          return subjectKey(f);
        case 'FROM':
          return keyOf(f, key, () => casemap(localPart(f.from)));
        case 'TO':
          return keyOf(f, key, () => casemap(localPart(f.to)));
        case 'CC':
          return keyOf(f, key, () => casemap(localPart(f.cc)));
        case 'DISPLAYFROM':
          return keyOf(f, key, () => casemap(display(f.from, decode)));
        default:
          return keyOf(f, key, () => casemap(display(f.to, decode)));
      }
    }),
  );
  const order = facts.map((_, i) => i);
  order.sort((a, b) => {
    for (let k = 0; k < criteria.length; k++) {
      const x = keys[a]![k]!;
      const y = keys[b]![k]!;
      const c = typeof x === 'number' ? x - (y as number) : Buffer.compare(x, y as Buffer);
      if (c !== 0) return criteria[k]!.reverse ? -c : c;
    }
    return facts[a]!.seq - facts[b]!.seq;
  });
  return order.map((i) => facts[i]!);
}

/** A thread: a message (or none, for a dummy that holds siblings together) and its children. */
export interface ThreadNode {
  message: SortFacts | null;
  children: ThreadNode[];
}

/** Orders by sent date, then sequence number (RFC 5256 §3: "sent date … ties by sequence number"). */
const bySent = (a: SortFacts, b: SortFacts) => a.sent - b.sent || a.seq - b.seq;

/** THREAD=ORDEREDSUBJECT (RFC 5256 §3): by base subject, each group's first (by sent date) the parent of the rest. */
export function threadOrderedSubject(facts: SortFacts[]): ThreadNode[] {
  const groups = new Map<string, SortFacts[]>();
  for (const f of [...facts].sort(bySent)) {
    const key = subjectKey(f).toString('latin1');
    const g = groups.get(key);
    if (g) g.push(f);
    else groups.set(key, [f]);
  }
  // Map keeps insertion order: groups by the sent date of their first message already.
  return [...groups.values()].map(([first, ...rest]) => ({
    message: first!,
    children: rest.map((m) => ({ message: m, children: [] })),
  }));
}

interface Container {
  message: SortFacts | null;
  parent: Container | null;
  children: Container[];
}

/**
 * Whether `b` is `a` or below it, walking up from `b`. The walks of one THREAD share a budget: a hostile
 * mailbox of deep chains with long References would cost n × references × depth. Past the budget every
 * answer is "yes", so no link is made that could close a loop: threads come out flatter, never wrong in shape.
 */
function reaches(a: Container, b: Container, budget: { steps: number }): boolean {
  for (let c: Container | null = b; c; c = c.parent) {
    if (c === a || --budget.steps <= 0) return true;
  }
  return false;
}

/** Steps of all loop checks of one THREAD=REFERENCES (a few tens of milliseconds). */
const WALK_BUDGET = 5_000_000;

function link(parent: Container, child: Container): void {
  if (child.parent) child.parent.children = child.parent.children.filter((c) => c !== child);
  child.parent = parent;
  parent.children.push(child);
}

/** THREAD=REFERENCES (RFC 5256 §3, after JWZ): by Message-ID, References and In-Reply-To, then subjects. */
export function threadReferences(facts: SortFacts[]): ThreadNode[] {
  // (1) Containers by message id; a message without an id, or with one seen already, gets its own.
  const table = new Map<string, Container>();
  const container = (id: string) => {
    let c = table.get(id);
    if (!c) {
      c = { message: null, parent: null, children: [] };
      table.set(id, c);
    }
    return c;
  };
  const roots: Container[] = [];
  const loose: Container[] = [];
  const budget = { steps: WALK_BUDGET };
  for (const f of facts) {
    let own: Container;
    const known = f.messageId ? table.get(f.messageId) : undefined;
    if (f.messageId && (!known || known.message === null)) {
      own = container(f.messageId);
      own.message = f;
    } else {
      own = { message: f, parent: null, children: [] };
      loose.push(own);
    }
    // (1B) The references, each the parent of the next, unless that would make a loop or it has one.
    let prev: Container | null = null;
    for (const id of f.references) {
      const c = container(id);
      // A container without children cannot be above `prev`: no walk needed (the usual case).
      if (prev && !c.parent && c !== prev && (c.children.length === 0 || !reaches(c, prev, budget)))
        link(prev, c);
      prev = c;
    }
    // (1C) The last reference is the parent of the message (breaking a link a truncated References made).
    if (prev && prev !== own && (own.children.length === 0 || !reaches(own, prev, budget))) link(prev, own);
    else if (!prev && own.parent) {
      own.parent.children = own.parent.children.filter((c) => c !== own);
      own.parent = null;
    }
  }
  // (2) The root set.
  for (const c of [...table.values(), ...loose]) if (!c.parent) roots.push(c);
  // (4) Dummies: without children gone; with children replaced by them, unless at the root with more
  // than one. Depth first with an explicit stack, children before parents.
  const post: Container[] = [];
  const stack: Container[] = [...roots];
  while (stack.length) {
    const c = stack.pop()!;
    post.push(c);
    stack.push(...c.children);
  }
  for (let i = post.length - 1; i >= 0; i--) {
    const c = post[i]!;
    if (c.message) continue;
    if (c.children.length === 0) {
      if (c.parent) c.parent.children = c.parent.children.filter((x) => x !== c);
      continue;
    }
    if (c.parent) {
      const p = c.parent;
      const at = p.children.indexOf(c);
      for (const k of c.children) k.parent = p;
      p.children.splice(at, 1, ...c.children);
    }
  }
  let top: Container[] = [];
  for (const c of roots) {
    if (c.message) top.push(c);
    else if (c.children.length > 1) top.push(c);
    else if (c.children.length === 1) {
      const only = c.children[0]!;
      only.parent = null;
      top.push(only);
    }
  }
  // The sent date of a container: its message's, or (a dummy) its earliest child's, children sorted first.
  const dateOf = new Map<Container, SortFacts>();
  const firstOf = (c: Container): SortFacts => {
    if (c.message) return c.message;
    const known = dateOf.get(c);
    if (known) return known;
    const earliest = c.children.map(firstOf).sort(bySent)[0]!;
    dateOf.set(c, earliest);
    return earliest;
  };
  const sortSiblings = (list: Container[]) => list.sort((a, b) => bySent(firstOf(a), firstOf(b)));
  // (6, first for the subjects) children sorted, everywhere; dummies have only message children by now.
  for (const c of post) if (c.children.length > 1) sortSiblings(c.children);
  sortSiblings(top);
  // (5) Threads of the same base subject gathered.
  const subjectOf = (c: Container) => baseSubject(firstOf(c).subject);
  const bySubject = new Map<string, Container>();
  for (const c of top) {
    const { base, reply } = subjectOf(c);
    if (!base) continue;
    const key = casemapText(base);
    const old = bySubject.get(key);
    if (!old || (!c.message && old.message) || (old.message && subjectOf(old).reply && !reply))
      bySubject.set(key, c);
  }
  const merged: Container[] = [];
  const gone = new Set<Container>();
  for (const c of top) {
    const { base, reply } = subjectOf(c);
    const key = base ? casemapText(base) : null;
    const old = key === null ? undefined : bySubject.get(key);
    if (!old || old === c || gone.has(c)) {
      if (!gone.has(c)) merged.push(c);
      continue;
    }
    gone.add(c);
    if (!old.message && !c.message) for (const k of c.children) link(old, k);
    else if (!old.message) link(old, c);
    else if (old.message && reply && !subjectOf(old).reply) link(old, c);
    else {
      // Neither is the other's parent: a new dummy holds both, where the table's one stood.
      const dummy: Container = { message: null, parent: null, children: [] };
      const at = merged.indexOf(old);
      link(dummy, old);
      link(dummy, c);
      old.parent = dummy;
      if (at !== -1) merged[at] = dummy;
      else gone.add(old);
      bySubject.set(key!, dummy);
      if (at === -1) merged.push(dummy);
    }
  }
  // (6) Everything sorted again: merging added children.
  dateOf.clear();
  const walk: Container[] = [...merged];
  while (walk.length) {
    const c = walk.pop()!;
    if (c.children.length > 1) sortSiblings(c.children);
    walk.push(...c.children);
  }
  top = sortSiblings(merged);
  const toNode = (c: Container): ThreadNode => ({ message: c.message, children: [] });
  const out = top.map(toNode);
  const pending: Array<[Container, ThreadNode]> = top.map((c, i) => [c, out[i]!]);
  while (pending.length) {
    const [c, n] = pending.pop()!;
    for (const k of c.children) {
      const kn = toNode(k);
      n.children.push(kn);
      pending.push([k, kn]);
    }
  }
  return out;
}

/**
 * The THREAD response's data (RFC 5256 §4): `(a b (c)(d e))`: a message followed by its only child on
 * the same level, two or more children each in parentheses; a dummy is its children alone. Numbers are
 * sequence numbers or UIDs. Written without recursion.
 */
export function formatThreads(threads: ThreadNode[], number: (f: SortFacts) => number): string {
  const tokens: string[] = [];
  const stack: Array<ThreadNode | '(' | ')'> = [];
  const lists = (nodes: ThreadNode[]) => {
    for (let i = nodes.length - 1; i >= 0; i--) stack.push(')', nodes[i]!, '(');
  };
  lists(threads);
  while (stack.length) {
    const t = stack.pop()!;
    if (t === '(' || t === ')') {
      tokens.push(t);
      continue;
    }
    if (t.message) tokens.push(String(number(t.message)));
    if (t.children.length === 1) stack.push(t.children[0]!);
    else lists(t.children);
  }
  // A space between two numbers and between a number and the parenthesis of a nested list.
  let out = '';
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    const prev = tokens[i - 1];
    if (prev !== undefined && prev !== '(' && prev !== ')' && t !== ')') out += ' ';
    out += t;
  }
  return out;
}
