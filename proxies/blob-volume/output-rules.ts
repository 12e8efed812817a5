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
 * Matching is linear in the name (policy/glob.ts): a crafted name cannot stall the
 * main thread that serves every mount.
 */
import { isMembraneError, MembraneError } from '../../policy/errors.js';
import { compileGlob as compilePolicyGlob, type Glob } from '../../policy/glob.js';
import { VolumeErrorCode } from './errno.js';

export interface OutputRules {
  /** Glob patterns of allowed object paths; absent = any name. An empty list allows nothing. */
  allow?: string[];
  /** Largest object, in bytes; absent = unlimited. */
  maxObjectBytes?: number;
}

/** Compiles one glob (policy/glob.ts: linear-time matching); throws VOLUME_OPTIONS on malformed patterns. */
export function compileGlob(pattern: string): Glob {
  try {
    return compilePolicyGlob(pattern);
  } catch (e) {
    if (!isMembraneError(e)) throw e;
    throw new MembraneError(VolumeErrorCode.OPTIONS, `output-rule ${e.message}`, { cause: e });
  }
}

export class OutputRulesPolicy {
  private readonly patterns: Glob[] | undefined;
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
