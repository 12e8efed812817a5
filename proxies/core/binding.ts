/**
 * Object binding: the encryption context entries that tie an object to where it
 * belongs. Moving, renaming or swapping an object between paths or datasources
 * changes what the reader expects, so the header no longer matches and reading
 * fails — without a single extra byte of metadata outside the message.
 */
import { MembraneError } from '../../policy/errors.js';
import { normalizeObjectPath } from '../../policy/object-path.js';
import type { EncryptionContext } from './encryption-context.js';
import { FormatErrorCode, formatError } from './errors.js';

export const CONTEXT_DATASOURCE = 'membrane:datasource';
export const CONTEXT_PATH = 'membrane:path';
const RESERVED_PREFIXES = ['membrane:', 'aws-crypto-'];

export interface ObjectBinding {
  /** Datasource or datasink name. */
  readonly datasource: string;
  /** Object path inside it: '/'-separated, relative, normalized. */
  readonly path: string;
}

export { normalizeObjectPath };

/** Encryption context for an object: the binding plus optional caller entries. */
export function contextFor(binding: ObjectBinding, extra: Record<string, string> = {}): EncryptionContext {
  if (!binding.datasource) throw new MembraneError('USAGE', 'datasource name must not be empty');
  for (const k of Object.keys(extra)) {
    if (RESERVED_PREFIXES.some((p) => k.startsWith(p))) {
      throw new MembraneError('USAGE', `encryption context key '${k}' uses a reserved prefix`);
    }
  }
  return {
    ...extra,
    [CONTEXT_DATASOURCE]: binding.datasource,
    [CONTEXT_PATH]: normalizeObjectPath(binding.path),
  };
}

/** Fails unless the header's context binds the object to `expected`. Extra non-reserved entries are allowed. */
export function checkBinding(ctx: EncryptionContext, expected: ObjectBinding, where?: string): void {
  const wantPath = normalizeObjectPath(expected.path);
  const gotDs = ctx[CONTEXT_DATASOURCE];
  const gotPath = ctx[CONTEXT_PATH];
  if (gotDs !== expected.datasource || gotPath !== wantPath) {
    throw formatError(
      FormatErrorCode.CONTEXT_MISMATCH,
      `object is bound to ${describe(gotDs, gotPath)}, expected ${describe(expected.datasource, wantPath)} (moved, renamed or swapped)`,
      where,
    );
  }
}

const describe = (ds: string | undefined, p: string | undefined) =>
  ds === undefined && p === undefined
    ? 'no Membrane location'
    : `datasource '${ds ?? '?'}' path '${p ?? '?'}'`;
