/**
 * Path globs matched in linear time: `*` (any run of characters except the separator),
 * `**` (any run, separators included), `?` (one character except the separator); every other
 * character is literal. Matching simulates the pattern as an NFA over a bit set of positions
 * (Thompson's construction), so the cost is O(input × pattern) with no backtracking: a hostile
 * path like `/a/a/a/.../b` against `/**\/a/**\/a/**\/c` cannot blow up the way a regex can.
 *
 * Pure and shared: egress rules match request paths with it, and any proxy that filters
 * names may reuse it.
 */

enum Tok {
  Lit = 0,
  One = 1,
  Star = 2,
  GlobStar = 3,
}

export interface Glob {
  readonly source: string;
  matches(input: string): boolean;
}

export function compileGlob(pattern: string, separator = '/'): Glob {
  const kinds: Tok[] = [];
  const chars: number[] = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        kinds.push(Tok.GlobStar);
        i++;
        while (pattern[i + 1] === '*') i++; // `***` = `**`
      } else kinds.push(Tok.Star);
      chars.push(0);
    } else if (c === '?') {
      kinds.push(Tok.One);
      chars.push(0);
    } else {
      kinds.push(Tok.Lit);
      chars.push(pattern.charCodeAt(i));
    }
  }
  const m = kinds.length;
  const sep = separator.charCodeAt(0);

  // Fast paths: no wildcard at all, or one trailing `**` after a literal prefix.
  if (kinds.every((k) => k === Tok.Lit)) return { source: pattern, matches: (s) => s === pattern };
  const firstWild = kinds.findIndex((k) => k !== Tok.Lit);
  if (firstWild === m - 1 && kinds[m - 1] === Tok.GlobStar) {
    const prefix = pattern.slice(0, pattern.length - 2).replace(/\*+$/, '');
    return { source: pattern, matches: (s) => s.startsWith(prefix) };
  }

  // `star[i]`: token i can match the empty string, so position i+1 is active whenever i is.
  const closure = (set: Uint8Array) => {
    for (let i = 0; i < m; i++)
      if (set[i] && (kinds[i] === Tok.Star || kinds[i] === Tok.GlobStar)) set[i + 1] = 1;
  };
  return {
    source: pattern,
    matches(s: string): boolean {
      let cur = new Uint8Array(m + 1);
      let next = new Uint8Array(m + 1);
      cur[0] = 1;
      closure(cur);
      for (let j = 0; j < s.length; j++) {
        const ch = s.charCodeAt(j);
        next.fill(0);
        let any = false;
        for (let i = 0; i < m; i++) {
          if (!cur[i]) continue;
          switch (kinds[i]) {
            case Tok.Lit:
              if (chars[i] === ch) next[i + 1] = 1;
              break;
            case Tok.One:
              if (ch !== sep) next[i + 1] = 1;
              break;
            case Tok.Star:
              if (ch !== sep) next[i] = 1;
              break;
            case Tok.GlobStar:
              next[i] = 1;
              break;
          }
        }
        closure(next);
        for (let i = 0; i <= m; i++)
          if (next[i]) {
            any = true;
            break;
          }
        if (!any) return false;
        const t = cur;
        cur = next;
        next = t;
      }
      return cur[m] === 1;
    },
  };
}
