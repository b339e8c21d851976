/**
 * Address lists of header fields (RFC 5322 §3.4, with the obsolete forms of
 * §4.4: source routes, comments anywhere, missing display-name quotes), for
 * IMAP's ENVELOPE (RFC 3501 §7.4.2) and for SEARCH FROM/TO/CC/BCC.
 *
 * Invariants:
 * - Linear: one pass to cut the value into tokens, one pass over the tokens.
 *   A field holding 100,000 addresses costs 100,000 steps, never their square.
 * - Bounded: at most `MAX_ADDRESSES` entries come out; the rest of the field
 *   is not even cut into tokens (the bytes stay in the message).
 * - Total: any input gives a list (possibly empty), never an exception.
 *
 * Display names stay as written (RFC 2047 encoded words included): ENVELOPE
 * carries them raw and the client decodes them.
 */

export interface EnvelopeAddress {
  /** Display name as written (quotes removed, encoded words kept), '' when there is none. */
  name: string;
  /** `local@domain`; `local` alone when the domain is missing. */
  address: string;
  /** An obsolete source route (`@a,@b`), RFC 5322 §4.4; ENVELOPE's "adl". */
  route?: string;
}

export interface EnvelopeGroup {
  name: string;
  group: EnvelopeAddress[];
}

export type AddressEntry = EnvelopeAddress | EnvelopeGroup;

/** Entries (addresses and group members together) kept per field; see docs/decisions.md. */
export const MAX_ADDRESSES = 1000;

type Token =
  | { t: 'word'; v: string; quoted: boolean; space: boolean }
  | { t: 'special'; v: string }
  | { t: 'comment'; v: string };

const SPECIALS = '<>@,:;.[]';

/** Cuts a field value into words, specials and comments, stopping once `maxSeparators` commas went by. */
function tokenize(s: string, maxSeparators: number): Token[] {
  const out: Token[] = [];
  let i = 0;
  let space = false;
  let separators = 0;
  const n = s.length;
  while (i < n) {
    const c = s[i]!;
    if (c === ' ' || c === '\t' || c === '\r' || c === '\n') {
      space = true;
      i++;
      continue;
    }
    if (c === '(') {
      // Comments nest (RFC 5322 §3.2.2); quoted pairs escape a parenthesis.
      let depth = 1;
      let text = '';
      i++;
      while (i < n && depth > 0) {
        const d = s[i]!;
        if (d === '\\' && i + 1 < n) {
          text += s[i + 1];
          i += 2;
          continue;
        }
        if (d === '(') depth++;
        else if (d === ')') depth--;
        if (depth > 0) text += d;
        i++;
      }
      out.push({ t: 'comment', v: text.trim() });
      space = true;
      continue;
    }
    if (c === '"') {
      let text = '';
      i++;
      while (i < n && s[i] !== '"') {
        if (s[i] === '\\' && i + 1 < n) i++;
        text += s[i];
        i++;
      }
      i++;
      out.push({ t: 'word', v: text, quoted: true, space });
      space = false;
      continue;
    }
    if (c === '[') {
      // A domain literal is one word, brackets included.
      const close = s.indexOf(']', i);
      const end = close === -1 ? n : close + 1;
      out.push({ t: 'word', v: s.slice(i, end), quoted: false, space });
      i = end;
      space = false;
      continue;
    }
    if (SPECIALS.includes(c)) {
      if (c === ',' && ++separators > maxSeparators) break;
      out.push({ t: 'special', v: c });
      i++;
      space = false;
      continue;
    }
    let j = i;
    while (j < n) {
      const d = s[j]!;
      if (
        d === ' ' ||
        d === '\t' ||
        d === '\r' ||
        d === '\n' ||
        d === '(' ||
        d === '"' ||
        SPECIALS.includes(d)
      )
        break;
      j++;
    }
    out.push({ t: 'word', v: s.slice(i, j), quoted: false, space });
    i = j;
    space = false;
  }
  return out;
}

/**
 * Parses an address-list. Groups come out as `{ name, group }`; a group
 * without members (`undisclosed-recipients:;`) is a group with an empty list.
 */
export function parseAddressList(value: string, max = MAX_ADDRESSES): AddressEntry[] {
  const tokens = tokenize(value, max);
  const out: AddressEntry[] = [];
  let count = 0;
  let group: EnvelopeGroup | null = null;
  // The words seen since the last separator, and what they turned out to be.
  let phrase: string[] = [];
  let phraseText = '';
  let lastComment = '';
  const addWord = (w: Extract<Token, { t: 'word' }>) => {
    phrase.push(w.v);
    phraseText += (phraseText && w.space ? ' ' : '') + w.v;
  };
  const emit = (a: EnvelopeAddress) => {
    if (count >= max) return;
    count++;
    if (group) group.group.push(a);
    else out.push(a);
  };
  const reset = () => {
    phrase = [];
    phraseText = '';
    lastComment = '';
  };
  let i = 0;
  while (i < tokens.length && count < max) {
    const tok = tokens[i]!;
    if (tok.t === 'comment') {
      lastComment = tok.v;
      i++;
      continue;
    }
    if (tok.t === 'word') {
      addWord(tok);
      i++;
      continue;
    }
    switch (tok.v) {
      case ':': {
        // A group's display name; a colon inside a group is not a new group (groups do not nest).
        if (!group) {
          group = { name: phraseText, group: [] };
          if (count < max) out.push(group);
        }
        reset();
        i++;
        break;
      }
      case ';':
      case ',': {
        // A lone word list: an address without a domain (or nothing, for `,,`).
        if (phrase.length) emit({ name: '', address: phrase.join('') });
        reset();
        if (tok.v === ';') group = null;
        i++;
        break;
      }
      case '<': {
        const name = phraseText || lastComment;
        const r = angleAddr(tokens, i + 1);
        i = r.next;
        emit({ name, address: r.address, ...(r.route ? { route: r.route } : {}) });
        reset();
        // Anything up to the next separator belongs to nothing (a trailing comment, junk).
        while (i < tokens.length && !(tokens[i]!.t === 'special' && ',;'.includes(tokens[i]!.v))) i++;
        break;
      }
      default: {
        // `@` or `.`: the words so far begin an addr-spec (local-part).
        const r = addrSpec(tokens, i, phrase);
        const next = tokens[r.next];
        if (next?.t === 'special' && next.v === '<') {
          // Not an address but the obsolete phrase with a "." before an angle address (RFC 5322 §4.1
          // obs-phrase, `John Q. Public <john@example.org>`): a display name after all.
          for (let k = i; k < r.next; k++) {
            const t = tokens[k]!;
            if (t.t === 'word') addWord(t);
            else if (t.t === 'special') phraseText += t.v;
          }
          i = r.next;
          break;
        }
        i = r.next;
        // Obsolete: `user@host (Name)`; the last comment names the mailbox.
        emit({ name: r.comment, address: r.address });
        reset();
        while (i < tokens.length && !(tokens[i]!.t === 'special' && ',;'.includes(tokens[i]!.v))) i++;
      }
    }
  }
  if (phrase.length && count < max) emit({ name: '', address: phrase.join('') });
  return out;
}

/** `local@domain` from `start` (the words before it already in `local`), up to a separator or `>`. */
function addrSpec(
  tokens: Token[],
  start: number,
  local: string[],
): { address: string; next: number; comment: string } {
  let i = start;
  let localPart = local.join('');
  let domain: string | null = null;
  let comment = '';
  for (; i < tokens.length; i++) {
    const tok = tokens[i]!;
    if (tok.t === 'comment') {
      comment = tok.v;
      continue;
    }
    if (tok.t === 'special' && (tok.v === ',' || tok.v === ';' || tok.v === '>' || tok.v === '<')) break;
    if (tok.t === 'special' && tok.v === '@' && domain === null) {
      domain = '';
      continue;
    }
    if (domain === null) localPart += tok.v;
    else domain += tok.v;
  }
  return { address: domain ? `${localPart}@${domain}` : localPart, next: i, comment };
}

/** Inside `<…>`: an optional source route, then an addr-spec; returns the index after `>`. */
function angleAddr(tokens: Token[], start: number): { address: string; route: string; next: number } {
  let i = start;
  let route = '';
  // Obsolete route: `@a,@b:` before the addr-spec (RFC 5322 §4.4).
  let first = i;
  while (first < tokens.length && tokens[first]!.t === 'comment') first++;
  if (first < tokens.length && tokens[first]!.t === 'special' && tokens[first]!.v === '@') {
    let j = first;
    let text = '';
    while (j < tokens.length) {
      const tok = tokens[j]!;
      // A route ends at its colon; `>`, `<` and `;` end the scan so each token is looked at once.
      if (tok.t === 'special' && ':><;'.includes(tok.v)) break;
      if (tok.t !== 'comment') text += tok.v;
      j++;
    }
    if (j < tokens.length && tokens[j]!.v === ':') {
      route = text;
      i = j + 1;
    }
  }
  const r = addrSpec(tokens, i, []);
  i = r.next;
  if (i < tokens.length && tokens[i]!.t === 'special' && tokens[i]!.v === '>') i++;
  return { address: r.address, route, next: i };
}

/** The addresses of parsed entries, group members in place of their group. */
export const flatAddresses = (entries: AddressEntry[] | null | undefined): string[] =>
  (entries ?? []).flatMap((e) => ('group' in e ? e.group.map((m) => m.address) : [e.address]));
