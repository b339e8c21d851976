/**
 * LIST patterns (RFC 3501 §6.3.8): `*` matches anything, `%` anything but the
 * hierarchy delimiter. Matched by simulating the pattern's automaton over the
 * name, one character at a time, with the set of live positions: time is
 * (name length × pattern length) at worst, whatever the pattern, where a
 * regular expression built from it can take exponential time (`*%*%*%…x`).
 *
 * Runs of wildcards collapse first (`*%*%` is `*`; `%%` is `%`), and a
 * pattern needing more characters than a name can have matches nothing.
 */

const MAX_NAME_CHARS = 1024;

export type Matcher = (name: string) => boolean;

export function compilePattern(pattern: string, delimiter = '/'): Matcher {
  // Collapse wildcard runs.
  let p = '';
  for (let i = 0; i < pattern.length; ) {
    const c = pattern[i]!;
    if (c !== '*' && c !== '%') {
      p += c;
      i++;
      continue;
    }
    let star = false;
    while (i < pattern.length && (pattern[i] === '*' || pattern[i] === '%')) {
      if (pattern[i] === '*') star = true;
      i++;
    }
    p += star ? '*' : '%';
  }
  const literals = p.replace(/[*%]/g, '').length;
  if (literals > MAX_NAME_CHARS) return () => false;
  if (!p.includes('*') && !p.includes('%')) return (name) => name === p;
  const m = p.length;
  const wild = new Uint8Array(m); // 1: `*`, 2: `%`
  for (let i = 0; i < m; i++) wild[i] = p[i] === '*' ? 1 : p[i] === '%' ? 2 : 0;
  return (name) => {
    if (name.length < literals) return false;
    let live = new Uint8Array(m + 1);
    let next = new Uint8Array(m + 1);
    // Position i is live when the pattern up to i matched the name so far; wildcards may match nothing.
    const close = (set: Uint8Array) => {
      for (let i = 0; i < m; i++) if (set[i] && wild[i]) set[i + 1] = 1;
    };
    live[0] = 1;
    close(live);
    for (let k = 0; k < name.length; k++) {
      const c = name[k]!;
      next.fill(0);
      let any = false;
      for (let i = 0; i < m; i++) {
        if (!live[i]) continue;
        const w = wild[i];
        if (w === 1 || (w === 2 && c !== delimiter)) {
          next[i] = 1;
          any = true;
        } else if (w === 0 && p[i] === c) {
          next[i + 1] = 1;
          any = true;
        }
      }
      if (!any) return false;
      close(next);
      [live, next] = [next, live];
    }
    return live[m] === 1;
  };
}
