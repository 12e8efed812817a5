/**
 * Object-path globs matched in linear time (issue 12, defect 8).
 *
 * The volume's open-sink name rules used to compile globs to backtracking regular
 * expressions, run on the main thread that serves every FUSE mount: a pattern with
 * several stars against a crafted name took tens of seconds. Here a pattern becomes
 * a list of tokens and a name is matched by simulating the pattern as an NFA over
 * token positions (a set of live positions per character): O(name × pattern) time,
 * O(pattern) memory, whatever the input. No regular expression sees the name.
 *
 * Syntax (matches the WHOLE '/'-separated path):
 *   *      any run of characters except '/'
 *   **     any run of characters including '/'; followed by '/', it also matches zero directories
 *   ?      one character except '/'
 *   [abc] [a-z] [!abc] [^abc]   one character (not '/') from / not from the set
 *   {csv,json}           one of the comma-separated alternatives (not nested)
 * Characters are Unicode code points. Pure: no I/O.
 */
import { MembraneError } from './errors.js';

export const GlobErrorCode = { SYNTAX: 'GLOB_SYNTAX' } as const;

/** Brace alternatives multiply: a pattern may expand to at most this many alternatives. */
export const MAX_GLOB_ALTERNATIVES = 256;

type Token =
  | { t: 'lit'; c: string }
  | { t: 'one' }
  | { t: 'class'; negate: boolean; items: ({ c: string } | { from: string; to: string })[] }
  | { t: 'star' }
  | { t: 'globstar' }
  /** `**​/`: nothing, or any run of characters ending with '/'. */
  | { t: 'dirs' };

export interface Glob {
  readonly pattern: string;
  /** Does the whole `path` match? */
  test(path: string): boolean;
}

const syntax = (pattern: string, why: string) =>
  new MembraneError(GlobErrorCode.SYNTAX, `pattern '${pattern}': ${why}`);

/** Parses `pattern`; throws GLOB_SYNTAX on malformed patterns. */
export function compileGlob(pattern: string): Glob {
  if (pattern === '' || pattern.startsWith('/')) throw syntax(pattern, 'must be a non-empty relative path');
  const alternatives = expandBraces(pattern).map((alt) => tokenize(pattern, alt));
  return {
    pattern,
    test: (path: string) => {
      const cps = Array.from(path);
      return alternatives.some((tokens) => matches(tokens, cps));
    },
  };
}

/** `a{b,c}d{e,f}` -> [abde, abdf, acde, acdf] (as code-point arrays); braces do not nest. */
function expandBraces(pattern: string): string[][] {
  const cps = Array.from(pattern);
  let out: string[][] = [[]];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!;
    if (c === '[') {
      // A class is copied whole: braces and commas inside it are literal members.
      const close = classEnd(cps, i);
      if (close < 0) throw syntax(pattern, "unclosed '['");
      const body = cps.slice(i, close + 1);
      out = out.map((o) => [...o, ...body]);
      i = close;
    } else if (c === '{') {
      const options: string[][] = [[]];
      let j = i + 1;
      for (; j < cps.length && cps[j] !== '}'; j++) {
        const d = cps[j]!;
        if (d === '{') throw syntax(pattern, "nested '{'");
        if (d === ',') options.push([]);
        else if (d === '[') {
          const close = classEnd(cps, j);
          if (close < 0) throw syntax(pattern, "unclosed '['");
          options[options.length - 1]!.push(...cps.slice(j, close + 1));
          j = close;
        } else options[options.length - 1]!.push(d);
      }
      if (j >= cps.length) throw syntax(pattern, "unclosed '{'");
      if (out.length * options.length > MAX_GLOB_ALTERNATIVES)
        throw syntax(pattern, `expands to more than ${MAX_GLOB_ALTERNATIVES} alternatives`);
      out = out.flatMap((o) => options.map((opt) => [...o, ...opt]));
      i = j;
    } else out = out.map((o) => [...o, c]);
  }
  return out;
}

/** Index of the ']' closing the class opened at `open` (the first character after '[' is always a member). */
function classEnd(cps: string[], open: number): number {
  for (let j = open + 2; j < cps.length; j++) if (cps[j] === ']') return j;
  return -1;
}

function tokenize(pattern: string, cps: string[]): Token[] {
  const out: Token[] = [];
  for (let i = 0; i < cps.length; i++) {
    const c = cps[i]!;
    if (c === '*') {
      if (cps[i + 1] === '*') {
        i++;
        if (cps[i + 1] === '/') {
          i++;
          out.push({ t: 'dirs' });
        } else out.push({ t: 'globstar' });
      } else out.push({ t: 'star' });
    } else if (c === '?') out.push({ t: 'one' });
    else if (c === '[') {
      const close = classEnd(cps, i);
      if (close < 0) throw syntax(pattern, "unclosed '['");
      let body = cps.slice(i + 1, close);
      const negate = body[0] === '!' || body[0] === '^';
      if (negate) body = body.slice(1);
      const items: ({ c: string } | { from: string; to: string })[] = [];
      for (let k = 0; k < body.length; k++) {
        if (body[k + 1] === '-' && k + 2 < body.length) {
          items.push({ from: body[k]!, to: body[k + 2]! });
          k += 2;
        } else items.push({ c: body[k]! });
      }
      out.push({ t: 'class', negate, items });
      i = close;
    } else out.push({ t: 'lit', c });
  }
  return out;
}

function inClass(tok: Extract<Token, { t: 'class' }>, c: string): boolean {
  if (c === '/') return false;
  const cp = c.codePointAt(0)!;
  const hit = tok.items.some((it) =>
    'c' in it ? it.c === c : cp >= it.from.codePointAt(0)! && cp <= it.to.codePointAt(0)!,
  );
  return hit !== tok.negate;
}

/**
 * '**' never matched line terminators (it was a regex '.'); kept so that the rules an
 * operator wrote allow exactly what they allowed before.
 */
const LINE_END = new Set(['\n', '\r', '\u2028', '\u2029']);

/**
 * NFA simulation. State k = "tokens before k are matched". Zero-width moves: star,
 * globstar and dirs may match nothing (k -> k+1). On a character: lit/one/class
 * advance; star stays (not '/'); globstar stays. `dirs` is `(?:.*\/)?`: once it has
 * consumed a character it is "inside" (its own state set) and may only end on a '/'.
 */
function matches(tokens: Token[], name: string[]): boolean {
  const m = tokens.length;
  let cur = new Uint8Array(m + 1);
  let next = new Uint8Array(m + 1);
  let inside = new Uint8Array(m);
  let nextInside = new Uint8Array(m);
  const close = (set: Uint8Array) => {
    for (let k = 0; k < m; k++) {
      const t = tokens[k]!.t;
      if (set[k] && (t === 'star' || t === 'globstar' || t === 'dirs')) set[k + 1] = 1;
    }
  };
  cur[0] = 1;
  close(cur);
  for (const c of name) {
    next.fill(0);
    nextInside.fill(0);
    for (let k = 0; k < m; k++) {
      const tok = tokens[k]!;
      if (tok.t === 'dirs' && (cur[k] || inside[k])) {
        if (!LINE_END.has(c)) nextInside[k] = 1;
        if (c === '/') next[k + 1] = 1;
        continue;
      }
      if (!cur[k]) continue;
      switch (tok.t) {
        case 'lit':
          if (tok.c === c) next[k + 1] = 1;
          break;
        case 'one':
          if (c !== '/') next[k + 1] = 1;
          break;
        case 'class':
          if (inClass(tok, c)) next[k + 1] = 1;
          break;
        case 'star':
          if (c !== '/') next[k] = 1;
          break;
        case 'globstar':
          if (!LINE_END.has(c)) next[k] = 1;
          break;
      }
    }
    close(next);
    if (!next.includes(1) && !nextInside.includes(1)) return false;
    [cur, next] = [next, cur];
    [inside, nextInside] = [nextInside, inside];
  }
  return cur[m] === 1;
}
