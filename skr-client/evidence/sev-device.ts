/**
 * SEV-SNP evidence through the guest device ioctls (native addon, see
 * skr-client/native/snp.c):
 *   - /dev/sev-guest, Linux 6.x upstream driver, SNP_GET_REPORT;
 *   - /dev/sev, the Linux 5.x AMD driver in confidential ACI's utility VM,
 *     SEV_SNP_GUEST_MSG_REPORT (what the Azure sidecar uses there).
 * Both return MSG_REPORT_RSP (SEV-SNP ABI, table "MSG_REPORT_RSP"):
 *   0x00 u32 status, 0x04 u32 report_size, 0x08..0x1F reserved, 0x20 report.
 */
import { existsSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { MembraneError } from '../../policy/errors.js';
import { isSnpSyscallError, loadSnpAddon, type SnpAddon } from '../native/snp-addon.js';
import { SNP_REPORT_SIZE } from '../snp/report.js';
import type { LoadedCollateral } from './collateral.js';
import { checkReportData, finishSnpEvidence, type SnpEvidence } from './snp-evidence.js';
import type { EvidenceProvider } from './types.js';

export const SEV_GUEST_DEVICE = '/dev/sev-guest';
export const SEV_DEVICE_KERNEL5 = '/dev/sev';
export const MSG_REPORT_RSP_REPORT_OFFSET = 0x20;

/** SEV-SNP firmware status codes a report request can return (psp-sev.h / ABI spec). */
const FW_STATUS: Record<number, string> = {
  4: 'INVALID_LEN',
  22: 'INVALID_PARAM',
  23: 'RESOURCE_LIMIT',
  39: 'INVALID_KEY',
};

const hex = (n: number) => `0x${n.toString(16)}`;

/** Extracts the report from a MSG_REPORT_RSP container; status and size checked. */
export function parseReportResponse(resp: Uint8Array, device: string): Buffer {
  const b = Buffer.from(resp.buffer, resp.byteOffset, resp.byteLength);
  if (b.length < MSG_REPORT_RSP_REPORT_OFFSET + SNP_REPORT_SIZE)
    throw new MembraneError('EVIDENCE_FAILED', `${device}: response of ${b.length} bytes is too short`, {
      where: device,
    });
  const status = b.readUInt32LE(0);
  if (status !== 0)
    throw new MembraneError(
      'EVIDENCE_FAILED',
      `${device}: firmware refused the report request, status ${hex(status)}${FW_STATUS[status] ? ` (${FW_STATUS[status]})` : ''}`,
      { where: device },
    );
  const size = b.readUInt32LE(4);
  // Some drivers leave report_size zero; otherwise it must cover a full report.
  if (size !== 0 && (size < SNP_REPORT_SIZE || size > b.length - MSG_REPORT_RSP_REPORT_OFFSET))
    throw new MembraneError(
      'EVIDENCE_FAILED',
      `${device}: response says report_size ${size}, expected ${SNP_REPORT_SIZE}`,
      {
        where: device,
      },
    );
  return Buffer.from(
    b.subarray(MSG_REPORT_RSP_REPORT_OFFSET, MSG_REPORT_RSP_REPORT_OFFSET + SNP_REPORT_SIZE),
  );
}

function errnoName(n: number): string {
  return Object.entries(osConstants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

/** Maps an addon failure to an actionable MembraneError. */
export function mapDeviceError(e: unknown, device: string, abi: 5 | 6): MembraneError {
  if (!isSnpSyscallError(e))
    return new MembraneError('EVIDENCE_FAILED', `${device}: ${(e as Error).message}`, {
      where: device,
      cause: e,
    });
  const name = errnoName(e.errno);
  let hint = '';
  if (name === 'ENOENT')
    hint = ' — device not present: not an SEV-SNP guest, or the sev-guest driver is not loaded';
  else if (name === 'EACCES' || name === 'EPERM')
    hint = ' — permission denied: run as root or grant access to the device';
  else if (name === 'ENOTTY' || name === 'EINVAL')
    hint =
      abi === 6
        ? ' — the device does not accept SNP_GET_REPORT (a kernel 5.x driver? try /dev/sev)'
        : ' — the device does not accept SEV_SNP_GUEST_MSG_REPORT (a kernel 6.x driver? try /dev/sev-guest)';
  else if (e.fwError || e.vmmError)
    hint = ` — firmware error ${hex(e.fwError)}${FW_STATUS[e.fwError] ? ` (${FW_STATUS[e.fwError]})` : ''}, VMM error ${hex(e.vmmError)}`;
  return new MembraneError(
    'EVIDENCE_FAILED',
    `${device}: ${e.syscall} failed with ${name} (${e.message})${hint}`,
    {
      where: device,
      cause: e,
    },
  );
}

export interface SevDeviceOptions {
  /** 6 = /dev/sev-guest (SNP_GET_REPORT), 5 = /dev/sev (kernel 5.x ACI driver). */
  abi: 5 | 6;
  device?: string;
  /** VMPL to request (0..3); default 0. */
  vmpl?: number;
  collateral: () => Promise<LoadedCollateral>;
  /** Addon injection for tests; default loads build/Release/membrane_snp.node. */
  addon?: SnpAddon;
}

export class SevDeviceProvider implements EvidenceProvider {
  readonly name = 'sev-snp' as const;
  readonly source: string;
  readonly device: string;
  private readonly addon: SnpAddon;

  /** Throws at construction when the addon is missing, so selection fails early and precisely. */
  constructor(private readonly opts: SevDeviceOptions) {
    this.device = opts.device ?? (opts.abi === 6 ? SEV_GUEST_DEVICE : SEV_DEVICE_KERNEL5);
    this.source = this.device;
    const vmpl = opts.vmpl ?? 0;
    if (!(Number.isInteger(vmpl) && vmpl >= 0 && vmpl <= 3))
      throw new MembraneError(
        'EVIDENCE_INVALID_INPUT',
        `${this.device}: vmpl must be 0..3, got ${opts.vmpl}`,
      );
    this.addon = opts.addon ?? loadSnpAddon();
  }

  async getEvidence(reportData: Uint8Array): Promise<SnpEvidence> {
    const asked = checkReportData(reportData, this.device);
    if (!existsSync(this.device))
      throw new MembraneError(
        'EVIDENCE_NOT_FOUND',
        `${this.device} does not exist — not an SEV-SNP guest (kernel ${this.opts.abi}.x interface)`,
        { where: this.device },
      );
    let resp: Buffer | undefined;
    // The PSP can be momentarily busy (EAGAIN/EBUSY); a few short retries, then give up.
    for (let attempt = 0; ; attempt++) {
      try {
        resp = this.addon.getReport(this.opts.abi, this.device, asked, this.opts.vmpl ?? 0);
        break;
      } catch (e) {
        const busy = isSnpSyscallError(e) && ['EAGAIN', 'EBUSY'].includes(errnoName(e.errno));
        if (!busy || attempt >= 3) throw mapDeviceError(e, this.device, this.opts.abi);
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
      }
    }
    const report = parseReportResponse(resp, this.device);
    return finishSnpEvidence('sev-snp', this.source, report, asked, this.opts.collateral);
  }
}
