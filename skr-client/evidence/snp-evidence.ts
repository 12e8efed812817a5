/**
 * What every hardware SNP provider does after the kernel hands back a report:
 * parse it, confirm it carries the report_data we asked for (a report for
 * someone else's nonce must never leave this module), attach collateral, and
 * confirm host_data is the SHA-256 of the security policy we are about to send.
 */
import { createHash } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';
import { parseSnpReport } from '../snp/report.js';
import { type CollateralOptions, type LoadedCollateral, loadCollateral } from './collateral.js';
import type { Evidence, ProviderName } from './types.js';

export const REPORT_DATA_SIZE = 64;

/** Evidence plus where its collateral came from (for summaries and logs). */
export interface SnpEvidence extends Evidence {
  collateralSources?: LoadedCollateral['sources'];
}

export function checkReportData(reportData: Uint8Array, who: string): Buffer {
  if (!(reportData instanceof Uint8Array) || reportData.length !== REPORT_DATA_SIZE)
    throw new MembraneError(
      'EVIDENCE_INVALID_INPUT',
      `${who}: report data must be exactly ${REPORT_DATA_SIZE} bytes, got ${(reportData as Uint8Array | undefined)?.length ?? 'none'}`,
    );
  return Buffer.from(reportData);
}

/** Collateral is static for the life of the guest: load once, retry after failures. */
export function cachedCollateral(opts: CollateralOptions): () => Promise<LoadedCollateral> {
  let p: Promise<LoadedCollateral> | undefined;
  return () => {
    if (!p) {
      p = loadCollateral(opts);
      p.catch(() => {
        p = undefined;
      });
    }
    return p;
  };
}

export async function finishSnpEvidence(
  provider: ProviderName,
  source: string,
  reportBytes: Buffer,
  asked: Buffer,
  collateral: () => Promise<LoadedCollateral>,
): Promise<SnpEvidence> {
  const report = parseSnpReport(reportBytes);
  if (!report.reportData.equals(asked))
    throw new MembraneError(
      'EVIDENCE_MISMATCH',
      `${source} returned a report whose report_data is not the 64 bytes requested (concurrent use of the interface?)`,
    );
  const { collateral: c, sources } = await collateral();
  if (c.securityPolicy) {
    const digest = createHash('sha256').update(c.securityPolicy).digest();
    if (!digest.equals(report.hostData))
      throw new MembraneError(
        'EVIDENCE_MISMATCH',
        `report host_data ${report.hostData.toString('hex')} is not the SHA-256 of the security policy (${digest.toString('hex')}) — the security context does not belong to this guest`,
        { where: sources.securityPolicy },
      );
  }
  return { provider, source, report: report.raw, collateral: c, collateralSources: sources };
}
