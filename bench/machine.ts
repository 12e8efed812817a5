/** What the numbers were measured on; every report carries it. */
import { availableParallelism, cpus, loadavg } from 'node:os';
import { opensslVersion } from './openssl.js';
import type { MachineInfo } from './types.js';

export async function machineInfo(): Promise<MachineInfo> {
  const c = cpus();
  return {
    cpus: availableParallelism(),
    model: c[0]?.model.trim() ?? 'unknown',
    node: process.version,
    openssl: await opensslVersion(),
    nodeOpenssl: process.versions.openssl ?? 'unknown',
    platform: process.platform,
    arch: process.arch,
    loadAverage: loadavg().map((l) => Math.round(l * 100) / 100),
  };
}
