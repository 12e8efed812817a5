/**
 * Chooses the evidence provider. Hardware first, in the order the kernel
 * interfaces were introduced in reverse (newest, most general first):
 * configfs-tsm, /dev/sev-guest (6.x), /dev/sev (5.x, confidential ACI).
 * The virtual provider is chosen ONLY when `provider: 'virtual'` is passed;
 * auto-detection never falls back to it, whatever else is set.
 */
import { existsSync, statSync } from 'node:fs';
import { MembraneError } from '../../policy/errors.js';
import type { CollateralOptions } from './collateral.js';
import { ConfigfsTsmProvider, TSM_REPORT_DIR, type TsmFs } from './configfs-tsm.js';
import { SEV_DEVICE_KERNEL5, SEV_GUEST_DEVICE, SevDeviceProvider } from './sev-device.js';
import { cachedCollateral } from './snp-evidence.js';
import type { EvidenceProvider } from './types.js';
import { VirtualProvider } from './virtual.js';

export type { SnpEvidence } from './snp-evidence.js';
export type { Collateral, Evidence, EvidenceProvider, ProviderName } from './types.js';

export interface SelectProviderOptions {
  provider?: 'sev-snp' | 'virtual';
  /** Policy for the virtual provider (its SHA-256 becomes host_data). */
  virtualPolicy?: Buffer;
  /**
   * Accepted for the contract; it does NOT make auto-detection pick the
   * virtual provider — only `provider: 'virtual'` does.
   */
  allowInsecureVirtual?: boolean;
  securityContextDir?: string;
  // ---- additive knobs (tests, unusual hosts) ----
  /** configfs-tsm report directory; default /sys/kernel/config/tsm/report. */
  tsmDir?: string;
  tsmFs?: TsmFs;
  /** Device paths; default /dev/sev-guest and /dev/sev. */
  sevGuestDevice?: string;
  sevDevice?: string;
  /** VMPL / privlevel to request; default kernel/0. */
  vmpl?: number;
  /** THIM endpoint for the certificate fallback, or false to disable it. */
  thimUrl?: string | false;
  env?: Record<string, string | undefined>;
  virtualMeasurement?: Buffer;
  warn?: (message: string) => void;
}

const isDir = (p: string) => {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
};

export async function selectProvider(opts: SelectProviderOptions = {}): Promise<EvidenceProvider> {
  if (opts.provider !== undefined && opts.provider !== 'sev-snp' && opts.provider !== 'virtual')
    throw new MembraneError(
      'EVIDENCE_CONFIG',
      `unknown evidence provider "${String(opts.provider)}" (sev-snp | virtual)`,
    );
  if (opts.provider === 'virtual') {
    if (!opts.virtualPolicy)
      throw new MembraneError(
        'EVIDENCE_CONFIG',
        'the virtual provider needs a policy (--virtual-policy FILE): its SHA-256 becomes host_data',
      );
    return new VirtualProvider({
      policy: opts.virtualPolicy,
      measurement: opts.virtualMeasurement,
      warn: opts.warn,
    });
  }

  const collateralOpts: CollateralOptions = {
    securityContextDir: opts.securityContextDir,
    env: opts.env,
    thimUrl: opts.thimUrl,
  };
  const collateral = cachedCollateral(collateralOpts);
  const tsmDir = opts.tsmDir ?? TSM_REPORT_DIR;
  const sevGuest = opts.sevGuestDevice ?? SEV_GUEST_DEVICE;
  const sev = opts.sevDevice ?? SEV_DEVICE_KERNEL5;

  if (isDir(tsmDir))
    return new ConfigfsTsmProvider({ baseDir: tsmDir, privlevel: opts.vmpl, collateral, fs: opts.tsmFs });
  if (existsSync(sevGuest))
    return new SevDeviceProvider({ abi: 6, device: sevGuest, vmpl: opts.vmpl, collateral });
  if (existsSync(sev)) return new SevDeviceProvider({ abi: 5, device: sev, vmpl: opts.vmpl, collateral });
  throw new MembraneError(
    'EVIDENCE_NOT_FOUND',
    `no SEV-SNP evidence source found: ${tsmDir} (configfs-tsm, kernel 6.7+), ${sevGuest} (kernel 6.x) and ${sev} (kernel 5.x) are all absent — this is not an SEV-SNP guest. For local development only, choose the insecure virtual provider explicitly (--provider virtual --virtual-policy FILE)`,
  );
}
