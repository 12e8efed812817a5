/**
 * Output rules of open-mode datasinks: which object names may leave the enclave
 * unencrypted, and how large an object may grow. (Not "egress": that word is the
 * network proxy's.) Pure; the sink calls it on
 * create/rename (names) and write/truncate (sizes).
 *
 * Patterns match the WHOLE object path ('/'-separated, relative to the sink):
 *   *      any run of characters except '/'
 *   **     any run of characters including '/'; followed by '/', it also matches zero directories
 *   ?      one character except '/'
 *   [abc] [a-z] [!abc]   one character (not '/') from / not from the set
 *   {csv,json}           one of the comma-separated alternatives (not nested)
 * So 'reports/*.csv' allows reports/q1.csv but not reports/2024/q1.csv, and a
 * double star, a slash and '*.csv' allows a CSV at any depth, the top level included.
 */
import { MembraneError } from '../../policy/errors.js';
import { VolumeErrorCode } from './errno.js';

export interface OutputRules {
  /** Glob patterns of allowed object paths; absent = any name. An empty list allows nothing. */
  allow?: string[];
  /** Largest object, in bytes; absent = unlimited. */
  maxObjectBytes?: number;
}

const special = /[\\^$.|+()]/;

/** Compiles one glob to an anchored RegExp; throws VOLUME_OPTIONS on malformed patterns. */
export function compileGlob(pattern: string): RegExp {
  if (pattern === '' || pattern.startsWith('/')) {
    throw new MembraneError(
      VolumeErrorCode.OPTIONS,
      `output-rule pattern '${pattern}' must be a non-empty relative path`,
    );
  }
  let re = '';
  let inBraces = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          re += '(?:.*/)?'; // '**/' : zero or more whole directories
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0)
        throw new MembraneError(VolumeErrorCode.OPTIONS, `output-rule pattern '${pattern}': unclosed '['`);
      let body = pattern.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      body = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
      re += negate ? `[^/${body}]` : `(?!/)[${body}]`;
      i = close;
    } else if (c === '{') {
      if (inBraces)
        throw new MembraneError(VolumeErrorCode.OPTIONS, `output-rule pattern '${pattern}': nested '{'`);
      inBraces = true;
      re += '(?:';
    } else if (c === '}' && inBraces) {
      inBraces = false;
      re += ')';
    } else if (c === ',' && inBraces) re += '|';
    else re += special.test(c) || c === '{' || c === '}' || c === ']' ? `\\${c}` : c;
  }
  if (inBraces)
    throw new MembraneError(VolumeErrorCode.OPTIONS, `output-rule pattern '${pattern}': unclosed '{'`);
  return new RegExp(`^${re}$`, 'u');
}

export class OutputRulesPolicy {
  private readonly patterns: RegExp[] | undefined;
  readonly maxObjectBytes: number;

  constructor(readonly rules: OutputRules) {
    this.patterns = rules.allow?.map(compileGlob);
    const max = rules.maxObjectBytes;
    if (max !== undefined && (!Number.isSafeInteger(max) || max < 0)) {
      throw new MembraneError(
        VolumeErrorCode.OPTIONS,
        `output rules: maxObjectBytes must be a non-negative integer, got ${max}`,
      );
    }
    this.maxObjectBytes = max ?? Number.POSITIVE_INFINITY;
  }

  /** May an object with this path leave the enclave? */
  allowsName(path: string): boolean {
    return this.patterns === undefined || this.patterns.some((p) => p.test(path));
  }

  /** May an object grow to `bytes`? */
  allowsSize(bytes: number): boolean {
    return bytes <= this.maxObjectBytes;
  }
}
