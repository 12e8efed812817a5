/**
 * Process hardening for key-holding commands (`membrane up`, `skr release`, ...), through
 * the membrane_process addon (runtime/native/process.c): Node has no prctl, setrlimit or flock.
 *
 * - `hardenProcess()`: PR_SET_DUMPABLE 0 (no core dump, no same-uid ptrace, /proc/<pid>/mem
 *   root-only) and RLIMIT_CORE 0 (inherited by the application, so its cores cannot carry
 *   plaintext). MEMBRANE_ALLOW_CORE_DUMPS=1 skips both, for debugging only.
 * - `flockExclusive(fd)`: a lock the kernel releases when the process dies (audit lock).
 * - `zeroBytes(buf)`: explicit_bzero, a zeroing no optimiser may drop.
 *
 * Without the addon the hardening cannot be applied, so key-holding commands refuse to
 * run (fail closed) unless core dumps were explicitly allowed.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MembraneError } from '../policy/errors.js';

interface ProcessAddon {
  disableCoreDumps(): void;
  isDumpable(): boolean;
  flock(fd: number, exclusive: boolean, nonBlocking: boolean): boolean;
  zero(bytes: Uint8Array): void;
  cloexecAll(): number;
}

export const ProcessErrorCode = {
  ADDON_MISSING: 'PROCESS_ADDON_MISSING',
  HARDENING_FAILED: 'PROCESS_HARDENING_FAILED',
} as const;

export const ALLOW_CORE_DUMPS_ENV = 'MEMBRANE_ALLOW_CORE_DUMPS';

function addonPath(): string {
  // Works from both the TS sources and dist/: walk up to the directory holding binding.gyp.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return join(dir, 'build', 'Release', 'membrane_process.node');
    dir = dirname(dir);
  }
  return join(process.cwd(), 'build', 'Release', 'membrane_process.node');
}

let cached: ProcessAddon | undefined;
export function loadProcessAddon(): ProcessAddon {
  if (cached) return cached;
  const path = addonPath();
  try {
    cached = createRequire(import.meta.url)(path) as ProcessAddon;
  } catch (e) {
    throw new MembraneError(
      ProcessErrorCode.ADDON_MISSING,
      `native addon membrane_process is not available (${(e as Error).message.split('\n')[0]}) — run 'node scripts/build-native.mjs' (needs node-gyp and a C compiler)`,
      { where: path, cause: e },
    );
  }
  return cached;
}

export interface HardeningResult {
  /** false only when MEMBRANE_ALLOW_CORE_DUMPS=1 asked to skip it. */
  applied: boolean;
}

/** Call first thing in every command that will hold key bytes. Idempotent. */
export function hardenProcess(
  log: (line: string) => void,
  env: NodeJS.ProcessEnv = process.env,
): HardeningResult {
  if (env[ALLOW_CORE_DUMPS_ENV] === '1') {
    log(`WARNING: ${ALLOW_CORE_DUMPS_ENV}=1: core dumps stay enabled; a crash may write keys to disk`);
    return { applied: false };
  }
  const addon = loadProcessAddon();
  try {
    addon.disableCoreDumps();
  } catch (e) {
    throw new MembraneError(
      ProcessErrorCode.HARDENING_FAILED,
      `cannot disable core dumps (${(e as Error).message}); set ${ALLOW_CORE_DUMPS_ENV}=1 to run without (debugging only)`,
      { cause: e },
    );
  }
  return { applied: true };
}

/** Whether the kernel would write a core dump of this process (PR_GET_DUMPABLE). */
export function isDumpable(): boolean {
  return loadProcessAddon().isDumpable();
}

/** Non-blocking exclusive flock; false when another open file description holds it. */
export function flockExclusive(fd: number): boolean {
  return loadProcessAddon().flock(fd, true, true);
}

/**
 * Marks every descriptor above stdio close-on-exec; call right before spawning the
 * application so it inherits nothing but stdio (libfuse's /dev/fuse descriptor above all).
 * Returns how many descriptors had been inheritable. Throws a typed error without the addon:
 * a leak into the application is not a risk to take silently.
 */
export function closeOnExecAll(): number {
  return loadProcessAddon().cloexecAll();
}

/** Zeroes `bytes` with explicit_bzero when the addon is there, else with fill(0). */
export function zeroBytes(bytes: Uint8Array): void {
  if (bytes.length === 0) return;
  try {
    loadProcessAddon().zero(bytes);
  } catch {
    bytes.fill(0);
  }
}
