import { MembraneError } from './errors.js';

/**
 * The one rule for object paths, shared by the format binding, manifests and
 * stores: relative, '/'-separated, normalized, never escaping its datasource.
 */
export function normalizeObjectPath(path: string): string {
  const parts = path.split(/[\\/]+/).filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.some((p) => p === '..')) {
    throw new MembraneError(
      'PATH_INVALID',
      `object path '${path}' must be relative and stay inside its datasource`,
    );
  }
  return parts.join('/');
}
