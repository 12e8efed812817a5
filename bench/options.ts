import { MembraneError } from '../policy/errors.js';

/** A suite's numeric flag: absent -> undefined; otherwise a positive (integer) number or a USAGE error. */
export function positiveNumber(
  v: string | boolean | undefined,
  flag: string,
  integer: boolean,
): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new MembraneError(
      'USAGE',
      `${flag} must be a positive ${integer ? 'integer' : 'number'}, got '${String(v)}'`,
    );
  }
  return n;
}
