/**
 * Loader for the membrane_snp N-API addon (skr-client/native/snp.c), which
 * performs the SEV-SNP guest-report ioctls node cannot. Failing to load is a
 * precise, typed error — never a silent fallback: without the addon there is
 * no /dev/sev-guest or /dev/sev evidence (configfs-tsm needs no addon).
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MembraneError } from '../../policy/errors.js';

export interface SnpIoctlLayout {
  v6: {
    ioctl: number;
    size: number;
    msgVersion: number;
    reqData: number;
    respData: number;
    exitinfo2: number;
    reqSize: number;
    reqVmpl: number;
    respSize: number;
  };
  v5: {
    ioctl: number;
    size: number;
    reqMsgType: number;
    rspMsgType: number;
    msgVersion: number;
    requestLen: number;
    requestUaddr: number;
    responseLen: number;
    responseUaddr: number;
    error: number;
    reqSize: number;
    respSize: number;
  };
}

export interface SnpAddon {
  layout(): SnpIoctlLayout;
  /** Raw MSG_REPORT_RSP container. Throws Error with syscall/errno/fwError/vmmError. */
  getReport(abi: 5 | 6, device: string, userData: Uint8Array, vmpl: number): Buffer;
}

/** Error thrown by the addon for a failed open()/ioctl(). */
export interface SnpSyscallError extends Error {
  code: 'MEMBRANE_SNP_SYSCALL';
  syscall: 'open' | 'ioctl';
  errno: number;
  fwError: number;
  vmmError: number;
}

export function isSnpSyscallError(e: unknown): e is SnpSyscallError {
  return e instanceof Error && (e as { code?: unknown }).code === 'MEMBRANE_SNP_SYSCALL';
}

/** build/Release/membrane_snp.node of the project this module belongs to. */
export function defaultAddonPath(): string {
  // Works from both the TS sources and dist/: walk up to the directory holding binding.gyp.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return join(dir, 'build', 'Release', 'membrane_snp.node');
    dir = dirname(dir);
  }
  return join(process.cwd(), 'build', 'Release', 'membrane_snp.node');
}

const cache = new Map<string, SnpAddon>();

export function loadSnpAddon(path = process.env.MEMBRANE_SNP_ADDON || defaultAddonPath()): SnpAddon {
  const hit = cache.get(path);
  if (hit) return hit;
  if (!existsSync(path))
    throw new MembraneError(
      'SNP_ADDON_MISSING',
      `native addon membrane_snp is not built, so /dev/sev-guest and /dev/sev cannot be used — run 'node scripts/build-native.mjs' (needs node-gyp and a C compiler), or use the configfs-tsm interface (/sys/kernel/config/tsm/report, kernel 6.7+)`,
      { where: path },
    );
  let mod: SnpAddon;
  try {
    mod = createRequire(import.meta.url)(path) as SnpAddon;
  } catch (e) {
    throw new MembraneError(
      'SNP_ADDON_MISSING',
      `native addon membrane_snp failed to load (${(e as Error).message}) — rebuild it with 'node scripts/build-native.mjs' for this Node version`,
      { where: path, cause: e },
    );
  }
  if (typeof mod.getReport !== 'function' || typeof mod.layout !== 'function')
    throw new MembraneError(
      'SNP_ADDON_MISSING',
      'native addon membrane_snp lacks getReport/layout: rebuild it',
      {
        where: path,
      },
    );
  cache.set(path, mod);
  return mod;
}
