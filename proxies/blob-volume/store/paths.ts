import { MembraneError } from '../../../policy/errors.js';
import { StoreErrorCode } from './types.js';

/** Validates and normalizes a store path: relative, '/'-separated, no '.', '..' or empty segments. */
export function storePath(p: string): string {
  const parts = p.split('/').filter((s) => s !== '');
  if (
    parts.length === 0 ||
    parts.some((s) => s === '.' || s === '..' || s.includes('\0') || s.includes('\\'))
  ) {
    throw new MembraneError(StoreErrorCode.INVALID_PATH, `invalid object path '${p}'`);
  }
  return parts.join('/');
}
