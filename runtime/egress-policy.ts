/**
 * The I/O half of the egress policy: read a policy file (or take the spec's
 * network.http.outbound section), read the files it references, compile. policy/egress/
 * stays pure; this is the one place that touches the disk for it, shared by
 * `membrane policy check-egress`, `membrane proxy http --policy` and `membrane up`.
 */
import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import {
  type CompiledEgressPolicy,
  compileEgressPolicy,
  EgressErrorCode,
  type EgressPolicy,
  egressPolicyFiles,
  parseEgressPolicy,
} from '../policy/egress/index.js';
import { MembraneError } from '../policy/errors.js';

/**
 * Reads every file `policy` references, relative to `baseDir` unless absolute, and compiles.
 * A file that cannot be read is left out, so that compileEgressPolicy names the field
 * (EGRESS_POLICY_INVALID) instead of a bare ENOENT.
 */
export function compileWithFiles(
  policy: EgressPolicy,
  baseDir: string,
  where?: string,
): CompiledEgressPolicy {
  const files: Record<string, string> = {};
  for (const f of egressPolicyFiles(policy)) {
    try {
      files[f] = readFileSync(isAbsolute(f) ? f : resolve(baseDir, f), 'utf8');
    } catch {
      /* reported by compileEgressPolicy */
    }
  }
  try {
    return compileEgressPolicy(policy, files);
  } catch (e) {
    if (e instanceof MembraneError && where !== undefined)
      throw Object.assign(new MembraneError(e.code, e.message, { where, cause: e }), {
        issues: (e as MembraneError & { issues?: unknown }).issues,
      });
    throw e;
  }
}

/** Reads, validates and compiles an egress policy file; EGRESS_POLICY_INVALID on any problem. */
export function loadEgressPolicyFile(path: string): CompiledEgressPolicy {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new MembraneError(
      EgressErrorCode.PolicyInvalid,
      `cannot read the egress policy file: ${(e as Error).message}`,
      { where: path, cause: e },
    );
  }
  return compileWithFiles(parseEgressPolicy(text, path), dirname(path), path);
}
