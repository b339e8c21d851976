/**
 * FETCH attributes (RFC 3501 §6.4.5 and §9 `fetch-att`, RFC 7162 MODSEQ and
 * CHANGEDSINCE): the macros ALL, FAST and FULL, a single attribute or a
 * parenthesised list, BODY[section]<partial> and BODY.PEEK, RFC822.*.
 */
import { bad } from '../errors.ts';
import type { Section } from '../fetch-data.ts';
import { type Cursor, utf8 } from './cursor.ts';
import { astring } from './encode.ts';

export type SimpleItem =
  | 'UID'
  | 'FLAGS'
  | 'INTERNALDATE'
  | 'RFC822.SIZE'
  | 'ENVELOPE'
  | 'BODYSTRUCTURE'
  | 'BODY'
  | 'MODSEQ'
  | 'EMAILID'
  | 'THREADID'
  | 'SAVEDATE';

export type FetchItem =
  | { kind: SimpleItem }
  /** PREVIEW (RFC 8970 §3); LAZY: NIL rather than reading a message whose preview is not kept. */
  | { kind: 'PREVIEW'; lazy: boolean }
  | {
      kind: 'section';
      /** How the response names it: `BODY[1.MIME]<0>`, `RFC822.HEADER`. */
      label: string;
      section: Section;
      /** Does not set \Seen (BODY.PEEK, RFC822.HEADER). */
      peek: boolean;
      partial: { start: number; length: number } | null;
      /** BINARY (RFC 3516): the part with its transfer encoding undone, or only its size so decoded. */
      binary?: 'content' | 'size';
    };

export interface FetchRequest {
  items: FetchItem[];
  /** CHANGEDSINCE (RFC 7162 §3.1.4): only messages whose modseq is above it. */
  changedSince: number | null;
  /** VANISHED (RFC 7162 §3.2.6): also the UIDs of the set that are gone. */
  vanished: boolean;
}

const MACROS: Record<string, SimpleItem[]> = {
  ALL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE'],
  FAST: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE'],
  FULL: ['FLAGS', 'INTERNALDATE', 'RFC822.SIZE', 'ENVELOPE', 'BODY'],
};
const SIMPLE = new Set<string>([
  'UID',
  'FLAGS',
  'INTERNALDATE',
  'RFC822.SIZE',
  'ENVELOPE',
  'BODYSTRUCTURE',
  'BODY',
  'MODSEQ',
  'EMAILID',
  'THREADID',
  'SAVEDATE',
]);

/** `[section]` after BODY/BODY.PEEK, the `[` taken; returns the section and its text for the label. */
export function readSection(c: Cursor): { section: Section; spec: string } {
  const path: number[] = [];
  let kind: Section['kind'] = '';
  let fields: string[] | undefined;
  if (!c.take(']')) {
    if (/[0-9]/.test(c.peek())) {
      for (;;) {
        path.push(c.nzNumber());
        if (!c.take('.')) break;
        if (!/[0-9]/.test(c.peek())) break;
      }
    }
    if (c.peek() !== ']') {
      const word = c.name();
      if (word === 'HEADER' || word === 'TEXT') kind = word;
      else if (word === 'HEADER.FIELDS' || word === 'HEADER.FIELDS.NOT') {
        kind = word;
        c.space();
        fields = [];
        const list = fields;
        c.list(() => list.push(utf8(c.astring())));
        if (list.length === 0) throw bad('HEADER.FIELDS needs at least one field name');
      } else if (word === 'MIME' && path.length > 0) kind = 'MIME';
      else throw bad(`Invalid section ${word.slice(0, 40)}`);
    }
    c.expect(']');
  }
  const spec =
    [path.join('.'), kind].filter(Boolean).join('.') +
    (fields ? ` (${fields.map((f) => astring(f)).join(' ')})` : '');
  return { section: { path, kind, ...(fields ? { fields } : {}) }, spec };
}

/** `<start.length>` after a section, or null (RFC 3501 §6.4.5); the response names only the start, `BODY[]<0>`. */
function readPartial(c: Cursor): { start: number; length: number } | null {
  if (!c.take('<')) return null;
  const start = c.number();
  c.expect('.');
  const length = c.nzNumber();
  c.expect('>');
  return { start, length };
}

function readItem(c: Cursor, out: FetchItem[]): void {
  const name = c.name();
  if (SIMPLE.has(name) && c.peek() !== '[') {
    out.push({ kind: name as SimpleItem });
    return;
  }
  switch (name) {
    case 'PREVIEW': {
      let lazy = false;
      // `PREVIEW (LAZY)`; a list that is not LAZY's is the FETCH modifiers after a lone PREVIEW.
      if (/^ \(LAZY[ )]/i.test(c.rest())) {
        c.space();
        c.list(() => {
          if (c.word() !== 'LAZY') throw bad('Unknown PREVIEW modifier');
          lazy = true;
        });
      }
      out.push({ kind: 'PREVIEW', lazy });
      return;
    }
    case 'RFC822':
      out.push({
        kind: 'section',
        label: 'RFC822',
        section: { path: [], kind: '' },
        peek: false,
        partial: null,
      });
      return;
    case 'RFC822.HEADER':
      out.push({
        kind: 'section',
        label: 'RFC822.HEADER',
        section: { path: [], kind: 'HEADER' },
        peek: true,
        partial: null,
      });
      return;
    case 'RFC822.TEXT':
      out.push({
        kind: 'section',
        label: 'RFC822.TEXT',
        section: { path: [], kind: 'TEXT' },
        peek: false,
        partial: null,
      });
      return;
    case 'BODY':
    case 'BODY.PEEK': {
      c.expect('[');
      const { section, spec } = readSection(c);
      const partial = readPartial(c);
      out.push({
        kind: 'section',
        label: `BODY[${spec}]${partial ? `<${partial.start}>` : ''}`,
        section,
        peek: name === 'BODY.PEEK',
        partial,
      });
      return;
    }
    case 'BINARY':
    case 'BINARY.PEEK':
    case 'BINARY.SIZE': {
      // RFC 3516 §4.2: `[section-part]`, part numbers only (or none: the whole message).
      c.expect('[');
      const path: number[] = [];
      if (!c.take(']')) {
        for (;;) {
          path.push(c.nzNumber());
          if (!c.take('.')) break;
        }
        c.expect(']');
      }
      const partial = name === 'BINARY.SIZE' ? null : readPartial(c);
      out.push({
        kind: 'section',
        label: `${name === 'BINARY.SIZE' ? 'BINARY.SIZE' : 'BINARY'}[${path.join('.')}]${partial ? `<${partial.start}>` : ''}`,
        section: { path, kind: '' },
        peek: name !== 'BINARY',
        partial,
        binary: name === 'BINARY.SIZE' ? 'size' : 'content',
      });
      return;
    }
    default:
      throw bad(`Unknown FETCH item ${name.slice(0, 40)}`);
  }
}

/** `"(" fetch-att *(SP fetch-att) ")"` alone: NOTIFY's MessageNew (RFC 5465 §8). */
export function readFetchItems(c: Cursor): FetchItem[] {
  const items: FetchItem[] = [];
  c.list(() => readItem(c, items));
  if (items.length === 0) throw bad('Empty FETCH item list');
  return items;
}

/** `fetch-att / "(" fetch-att *(SP fetch-att) ")" / ALL / FAST / FULL`, then `(CHANGEDSINCE n)`. */
export function parseFetch(c: Cursor): FetchRequest {
  const items: FetchItem[] = [];
  if (c.peek() === '(') {
    c.list(() => readItem(c, items));
    if (items.length === 0) throw bad('Empty FETCH item list');
  } else {
    const word = c.peekWord();
    if (MACROS[word] && !/[[.]/.test(c.rest().slice(word.length, word.length + 1))) {
      c.word();
      for (const k of MACROS[word]!) items.push({ kind: k });
    } else readItem(c, items);
  }
  let changedSince: number | null = null;
  let vanished = false;
  if (c.take(' ')) {
    c.list(() => {
      const mod = c.word();
      if (mod === 'CHANGEDSINCE') {
        c.space();
        changedSince = c.modseq();
      } else if (mod === 'VANISHED') vanished = true;
      else throw bad(`Unknown FETCH modifier ${mod.slice(0, 40)}`);
    });
    // RFC 7162 §3.2.6: VANISHED only together with CHANGEDSINCE.
    if (vanished && changedSince === null) throw bad('VANISHED needs CHANGEDSINCE');
  }
  c.end();
  return { items, changedSince, vanished };
}
