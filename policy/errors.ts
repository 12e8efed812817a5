/**
 * The one error type every layer throws. `code` is stable and machine-readable
 * (tests and operators match on it); `where` names the input that was wrong
 * (a file, a spec path, an object path, a frame index). Messages never carry
 * key material: callers pass only names and positions.
 */
export class MembraneError extends Error {
  readonly code: string;
  readonly where: string | undefined;

  constructor(code: string, message: string, options: { where?: string; cause?: unknown } = {}) {
    super(options.where ? `${message} (at ${options.where})` : message, { cause: options.cause });
    this.name = 'MembraneError';
    this.code = code;
    this.where = options.where;
  }
}

export function isMembraneError(e: unknown, code?: string): e is MembraneError {
  return e instanceof MembraneError && (code === undefined || e.code === code);
}
