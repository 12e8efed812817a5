/**
 * What every evidence provider hands to the attestation clients. Providers differ
 * in how they obtain a report (configfs-tsm, /dev/sev-guest, /dev/sev, virtual);
 * the MAA and KBS clients see only this shape.
 */
export type ProviderName = 'sev-snp' | 'virtual';

/** Platform collateral that accompanies an SNP report (Azure security-context names). */
export interface Collateral {
  /** Decoded container security policy (its SHA-256 is the report's host_data). */
  securityPolicy?: Buffer;
  /** PEM chain: VCEK, then ASK, then ARK. */
  vcekCertChainPem?: string;
  /** COSE_Sign1 UVM endorsement (Azure "reference info"), raw bytes. */
  uvmReferenceInfo?: Buffer;
  /** TCB version the VCEK was issued for, as hex string, when the host gave one. */
  tcbm?: string;
}

export interface Evidence {
  provider: ProviderName;
  /** Which mechanism produced the report, for logs/audit (e.g. "configfs-tsm", "virtual"). */
  source: string;
  /** The raw attestation report (1184 bytes for SNP). */
  report: Buffer;
  collateral: Collateral;
}

export interface EvidenceProvider {
  readonly name: ProviderName;
  readonly source: string;
  /** reportData: exactly 64 bytes bound into the report (shorter input is zero-padded by the caller). */
  getEvidence(reportData: Uint8Array): Promise<Evidence>;
}
