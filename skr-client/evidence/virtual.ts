/**
 * INSECURE development provider: an UNSIGNED report in the SNP layout whose
 * host_data is the SHA-256 of the given policy. Nothing here is backed by
 * hardware — anyone can produce it — so only local emulators accept it. It is
 * built only when explicitly asked for (never by auto-detection) and says so
 * loudly every time it is constructed.
 *
 * Report shape (cross-helper contract): version 2, sig_algo 0, signature zero,
 * vmpl 0, policy 0x30000 (DEBUG bit 19 clear), host_data = SHA-256(policy),
 * measurement = 48 zero bytes unless given, report_data = the 64 bytes asked for.
 */
import { createHash } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';
import { buildSnpReport } from '../snp/report.js';
import { checkReportData, type SnpEvidence } from './snp-evidence.js';
import type { EvidenceProvider } from './types.js';

export const VIRTUAL_POLICY = 0x30000n;
export const VIRTUAL_WARNING =
  'INSECURE virtual attestation: no hardware evidence — the report is unsigned and proves nothing; only local emulators accept it. Never use it with real keys.';

export interface VirtualOptions {
  /** The policy whose SHA-256 becomes host_data (e.g. the CCE policy of the container group). */
  policy: Buffer;
  measurement?: Buffer;
  /** Where the warning goes; default stderr. */
  warn?: (message: string) => void;
}

export class VirtualProvider implements EvidenceProvider {
  readonly name = 'virtual' as const;
  readonly source = 'virtual';
  private readonly policy: Buffer;
  private readonly measurement: Buffer;

  constructor(opts: VirtualOptions) {
    if (!Buffer.isBuffer(opts.policy) || opts.policy.length === 0)
      throw new MembraneError(
        'EVIDENCE_CONFIG',
        'virtual provider needs a non-empty policy (--virtual-policy FILE): its SHA-256 becomes host_data',
      );
    if (opts.measurement !== undefined && opts.measurement.length !== 48)
      throw new MembraneError(
        'EVIDENCE_CONFIG',
        `virtual measurement must be 48 bytes, got ${opts.measurement.length}`,
      );
    this.policy = Buffer.from(opts.policy);
    this.measurement = opts.measurement ? Buffer.from(opts.measurement) : Buffer.alloc(48);
    (opts.warn ?? ((m: string) => process.stderr.write(`\n*** WARNING: ${m} ***\n\n`)))(VIRTUAL_WARNING);
  }

  async getEvidence(reportData: Uint8Array): Promise<SnpEvidence> {
    const rd = checkReportData(reportData, 'virtual');
    const report = buildSnpReport({
      version: 2,
      sigAlgo: 0,
      vmpl: 0,
      policy: VIRTUAL_POLICY,
      hostData: createHash('sha256').update(this.policy).digest(),
      measurement: this.measurement,
      reportData: rd,
    });
    return {
      provider: 'virtual',
      source: this.source,
      report,
      collateral: { securityPolicy: Buffer.from(this.policy) },
      collateralSources: { securityPolicy: 'virtual policy' },
    };
  }
}
