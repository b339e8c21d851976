/**
 * What SORT and THREAD (RFC 5256) compare subjects and names by: the base
 * subject (§2.1) and the i;unicode-casemap collation (RFC 5051). Here, not in
 * the IMAP service, because the key of a message's subject is made once when
 * the message is parsed (sort-fields.ts) and kept with it.
 *
 * Bounds: the text is cut to MAX_SORT_TEXT characters before any work; every
 * step is linear in what is left.
 */
/** Subjects and names are cut to this many characters before they are compared or kept for sorting. */
export const MAX_SORT_TEXT = 1000;
const MAX_TEXT = MAX_SORT_TEXT;

/**
 * The base subject (RFC 5256 §2.1): without "Re:", "Fwd:", "[list]" leaders, "(fwd)" trailers and the
 * "[fwd: …]" wrapper, white space collapsed. `reply` is whether anything reply-like came off (§2.1 steps
 * 2–6; THREAD=REFERENCES step 5 asks).
 */
export function baseSubject(subject: string): { base: string; reply: boolean } {
  // (1) Decoded already; white space runs to one space.
  let s = subject.slice(0, MAX_TEXT).replace(/[\t\r\n ]+/g, ' ');
  let reply = false;
  for (let round = 0; round < MAX_TEXT; round++) {
    // (2) Trailers: "(fwd)" and white space, as often as they come.
    for (;;) {
      const t = s.replace(/ $/, '');
      const u = /\(fwd\)$/i.test(t) ? t.slice(0, -5) : t;
      if (u.length !== t.length) reply = true;
      if (u === s) break;
      s = u;
    }
    // (3)-(5) Leaders: "re"/"fw"/"fwd" with blobs before and one after, a lone white space, and a blob
    // when something is left after it.
    for (;;) {
      const leader = /^(?:\[[^[\]]*\] *)*(?:re|fwd?) *(?:\[[^[\]]*\] *)?:/i.exec(s);
      if (leader) {
        s = s.slice(leader[0].length);
        reply = true;
        continue;
      }
      if (s.startsWith(' ')) {
        s = s.slice(1);
        continue;
      }
      const blob = /^\[[^[\]]*\] */.exec(s);
      if (blob && blob[0].length < s.length) {
        s = s.slice(blob[0].length);
        continue;
      }
      break;
    }
    // (6) "[fwd: … ]" around it: off, and again from (2).
    if (/^\[fwd:/i.test(s) && s.endsWith(']')) {
      s = s.slice(5, -1);
      reply = true;
      continue;
    }
    break;
  }
  return { base: s, reply };
}

/**
 * i;unicode-casemap (RFC 5051 §2) as text: each character titlecased (its upper case here: the two differ
 * only for a few digraphs), then NFKD. Compared as UTF-8 octets (casemap), which is code point order.
 */
export function casemapText(text: string): string {
  const cut = text.slice(0, MAX_TEXT);
  // Printable ASCII (most subjects and names): upper case is the whole mapping, NFKD changes nothing.
  if (/^[\x20-\x7e]*$/.test(cut)) return cut.toUpperCase();
  // Upper case is mapped per code point (no context: toUpperCase has none, unlike lower casing's final sigma).
  return cut.toUpperCase().normalize('NFKD');
}

/** The collation key of `text`: its casemapped UTF-8 octets, compared with Buffer.compare. */
export function casemap(text: string): Buffer {
  return Buffer.from(casemapText(text), 'utf8');
}

/** What SORT (SUBJECT) and THREAD=ORDEREDSUBJECT compare: the casemapped base subject, as text. */
export function subjectKey(subject: string): string {
  return casemapText(baseSubject(subject).base);
}
