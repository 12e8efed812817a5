/**
 * AMD SEV-SNP ATTESTATION_REPORT parser (SEV-SNP Firmware ABI specification,
 * table "ATTESTATION_REPORT Structure"). Pure: bytes in, typed fields out.
 *
 * All multi-byte integers are little-endian. The signed region is bytes
 * 0x000..0x29F; the signature (0x2A0) holds R and S as 72-byte little-endian
 * integers of which only the low 48 bytes are used for P-384. We expose R/S
 * big-endian (the form every crypto API and DER expects) so callers never
 * repeat the byte-order dance.
 */
import { MembraneError } from '../../policy/errors.js';

export const SNP_REPORT_SIZE = 1184;
/** Length of the region covered by the signature. */
export const SNP_SIGNED_LENGTH = 0x2a0;
/** Signature algorithm value for ECDSA P-384 with SHA-384. */
export const SNP_SIG_ALGO_ECDSA_P384_SHA384 = 1;

/** Field offsets and sizes, as the ABI specification lists them. */
export const SNP_LAYOUT = {
  version: { offset: 0x00, size: 4 },
  guestSvn: { offset: 0x04, size: 4 },
  policy: { offset: 0x08, size: 8 },
  familyId: { offset: 0x10, size: 16 },
  imageId: { offset: 0x20, size: 16 },
  vmpl: { offset: 0x30, size: 4 },
  sigAlgo: { offset: 0x34, size: 4 },
  currentTcb: { offset: 0x38, size: 8 },
  platformInfo: { offset: 0x40, size: 8 },
  /** bit 0 AUTHOR_KEY_EN, bit 1 MASK_CHIP_KEY, bits 4:2 SIGNING_KEY. */
  keyInfo: { offset: 0x48, size: 4 },
  reportData: { offset: 0x50, size: 64 },
  measurement: { offset: 0x90, size: 48 },
  hostData: { offset: 0xc0, size: 32 },
  idKeyDigest: { offset: 0xe0, size: 48 },
  authorKeyDigest: { offset: 0x110, size: 48 },
  reportId: { offset: 0x140, size: 32 },
  reportIdMa: { offset: 0x160, size: 32 },
  reportedTcb: { offset: 0x180, size: 8 },
  /** Version 3+: CPUID family / model / stepping (zero in version 2). */
  cpuidFamId: { offset: 0x188, size: 1 },
  cpuidModId: { offset: 0x189, size: 1 },
  cpuidStep: { offset: 0x18a, size: 1 },
  chipId: { offset: 0x1a0, size: 64 },
  committedTcb: { offset: 0x1e0, size: 8 },
  currentBuild: { offset: 0x1e8, size: 1 },
  currentMinor: { offset: 0x1e9, size: 1 },
  currentMajor: { offset: 0x1ea, size: 1 },
  committedBuild: { offset: 0x1ec, size: 1 },
  committedMinor: { offset: 0x1ed, size: 1 },
  committedMajor: { offset: 0x1ee, size: 1 },
  launchTcb: { offset: 0x1f0, size: 8 },
  signatureR: { offset: 0x2a0, size: 72 },
  signatureS: { offset: 0x2e8, size: 72 },
} as const;

/** Bytes of R and S actually used by P-384 (the rest of each 72-byte slot must be zero). */
export const P384_SCALAR_SIZE = 48;

export interface SnpReport {
  version: number;
  guestSvn: number;
  policy: bigint;
  familyId: Buffer;
  imageId: Buffer;
  vmpl: number;
  sigAlgo: number;
  currentTcb: bigint;
  platformInfo: bigint;
  reportData: Buffer /*64*/;
  measurement: Buffer /*48*/;
  hostData: Buffer /*32*/;
  idKeyDigest: Buffer;
  authorKeyDigest: Buffer;
  reportId: Buffer;
  reportIdMa: Buffer;
  reportedTcb: bigint;
  chipId: Buffer /*64*/;
  committedTcb: bigint;
  launchTcb: bigint;
  /** Big-endian, 48 bytes each (converted from the report's little-endian 72-byte slots). */
  signature: { r: Buffer; s: Buffer };
  /** A private copy of the full 1184 bytes. */
  raw: Buffer;
  // ---- beyond the cross-helper contract (additive) ----
  /** AUTHOR_KEY_EN: the ID block was signed with an author key. */
  authorKeyEn: boolean;
  /** MASK_CHIP_KEY: chip_id is zeroed and the report is unsigned-by-chip-key. */
  maskChipKey: boolean;
  /** SIGNING_KEY: 0 = VCEK, 1 = VLEK, 7 = none. */
  signingKey: number;
  /** Version 3+ CPUID identification (all zero in version 2 reports). */
  cpuid: { family: number; model: number; stepping: number };
  /** Firmware versions (major.minor, build). */
  currentVersion: { major: number; minor: number; build: number };
  committedVersion: { major: number; minor: number; build: number };
}

/** Little-endian 72-byte slot -> big-endian 48-byte scalar. */
function scalarBE(slot: Buffer): Buffer {
  return Buffer.from(slot.subarray(0, P384_SCALAR_SIZE)).reverse();
}

export function parseSnpReport(buf: Uint8Array): SnpReport {
  if (!(buf instanceof Uint8Array)) throw new MembraneError('SNP_REPORT_INVALID', 'SNP report must be bytes');
  if (buf.length !== SNP_REPORT_SIZE)
    throw new MembraneError(
      'SNP_REPORT_INVALID',
      `SNP report must be exactly ${SNP_REPORT_SIZE} bytes, got ${buf.length}`,
    );
  // Copy: the caller may reuse its buffer, and Buffer views would follow.
  const raw = Buffer.from(buf);
  const L = SNP_LAYOUT;
  const bytes = (f: { offset: number; size: number }) =>
    Buffer.from(raw.subarray(f.offset, f.offset + f.size));
  const version = raw.readUInt32LE(L.version.offset);
  if (version < 2)
    throw new MembraneError(
      'SNP_REPORT_INVALID',
      `SNP report version ${version} is not supported (need 2 or later)`,
      { where: 'report offset 0x00' },
    );
  const keyInfo = raw.readUInt32LE(L.keyInfo.offset);
  return {
    version,
    guestSvn: raw.readUInt32LE(L.guestSvn.offset),
    policy: raw.readBigUInt64LE(L.policy.offset),
    familyId: bytes(L.familyId),
    imageId: bytes(L.imageId),
    vmpl: raw.readUInt32LE(L.vmpl.offset),
    sigAlgo: raw.readUInt32LE(L.sigAlgo.offset),
    currentTcb: raw.readBigUInt64LE(L.currentTcb.offset),
    platformInfo: raw.readBigUInt64LE(L.platformInfo.offset),
    reportData: bytes(L.reportData),
    measurement: bytes(L.measurement),
    hostData: bytes(L.hostData),
    idKeyDigest: bytes(L.idKeyDigest),
    authorKeyDigest: bytes(L.authorKeyDigest),
    reportId: bytes(L.reportId),
    reportIdMa: bytes(L.reportIdMa),
    reportedTcb: raw.readBigUInt64LE(L.reportedTcb.offset),
    chipId: bytes(L.chipId),
    committedTcb: raw.readBigUInt64LE(L.committedTcb.offset),
    launchTcb: raw.readBigUInt64LE(L.launchTcb.offset),
    signature: { r: scalarBE(bytes(L.signatureR)), s: scalarBE(bytes(L.signatureS)) },
    raw,
    authorKeyEn: (keyInfo & 1) !== 0,
    maskChipKey: (keyInfo & 2) !== 0,
    signingKey: (keyInfo >>> 2) & 7,
    cpuid: {
      family: raw[L.cpuidFamId.offset] as number,
      model: raw[L.cpuidModId.offset] as number,
      stepping: raw[L.cpuidStep.offset] as number,
    },
    currentVersion: {
      major: raw[L.currentMajor.offset] as number,
      minor: raw[L.currentMinor.offset] as number,
      build: raw[L.currentBuild.offset] as number,
    },
    committedVersion: {
      major: raw[L.committedMajor.offset] as number,
      minor: raw[L.committedMinor.offset] as number,
      build: raw[L.committedBuild.offset] as number,
    },
  };
}

/** Guest policy bits (ABI spec, table "Guest Policy Structure"). */
export interface SnpPolicyFlags {
  abiMinor: number;
  abiMajor: number;
  smt: boolean;
  /** Bit 17 is reserved and must be one. */
  reservedMbo: boolean;
  migrateMa: boolean;
  debug: boolean;
  singleSocket: boolean;
}

export const SNP_POLICY_DEBUG_BIT = 19n;

export function snpPolicyFlags(policy: bigint): SnpPolicyFlags {
  const bit = (n: bigint) => ((policy >> n) & 1n) === 1n;
  return {
    abiMinor: Number(policy & 0xffn),
    abiMajor: Number((policy >> 8n) & 0xffn),
    smt: bit(16n),
    reservedMbo: bit(17n),
    migrateMa: bit(18n),
    debug: bit(SNP_POLICY_DEBUG_BIT),
    singleSocket: bit(20n),
  };
}

/**
 * TCB_VERSION components. Milan/Genoa layout: byte 0 boot loader, 1 TEE,
 * 6 SNP, 7 microcode. Turin (CPUID family 0x1A) moved them: 0 FMC, 1 boot
 * loader, 2 TEE, 3 SNP, 7 microcode.
 */
export interface SnpTcb {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  fmc?: number;
}

export function snpTcbParts(tcb: bigint, cpuidFamily = 0): SnpTcb {
  const b = (i: number) => Number((tcb >> BigInt(8 * i)) & 0xffn);
  if (cpuidFamily === 0x1a) return { fmc: b(0), bootloader: b(1), tee: b(2), snp: b(3), microcode: b(7) };
  return { bootloader: b(0), tee: b(1), snp: b(6), microcode: b(7) };
}

/** `0x…` hex of a 64-bit value, zero-padded (the form Azure's tcbm uses, without the prefix). */
export function tcbHex(tcb: bigint): string {
  return tcb.toString(16).padStart(16, '0');
}

export interface SnpReportFields {
  version?: number;
  guestSvn?: number;
  policy?: bigint;
  vmpl?: number;
  sigAlgo?: number;
  currentTcb?: bigint;
  reportedTcb?: bigint;
  committedTcb?: bigint;
  launchTcb?: bigint;
  platformInfo?: bigint;
  reportData?: Uint8Array;
  measurement?: Uint8Array;
  hostData?: Uint8Array;
  chipId?: Uint8Array;
  familyId?: Uint8Array;
  imageId?: Uint8Array;
  reportId?: Uint8Array;
  /** KEY_INFO word (0x48); default 7 << 2 (SIGNING_KEY = none) since a built report is unsigned. */
  keyInfo?: number;
}

/**
 * Lays out an UNSIGNED report (signature bytes zero). Used by the virtual
 * provider and emulator tests; real reports come only from the PSP.
 */
export function buildSnpReport(f: SnpReportFields): Buffer {
  const b = Buffer.alloc(SNP_REPORT_SIZE);
  const L = SNP_LAYOUT;
  const put = (field: { offset: number; size: number }, v: Uint8Array | undefined, name: string) => {
    if (v === undefined) return;
    if (v.length !== field.size)
      throw new MembraneError('SNP_REPORT_INVALID', `${name} must be ${field.size} bytes, got ${v.length}`);
    b.set(v, field.offset);
  };
  b.writeUInt32LE(f.version ?? 2, L.version.offset);
  b.writeUInt32LE(f.guestSvn ?? 0, L.guestSvn.offset);
  b.writeBigUInt64LE(f.policy ?? 0x30000n, L.policy.offset);
  b.writeUInt32LE(f.vmpl ?? 0, L.vmpl.offset);
  b.writeUInt32LE(f.sigAlgo ?? 0, L.sigAlgo.offset);
  b.writeBigUInt64LE(f.currentTcb ?? 0n, L.currentTcb.offset);
  b.writeBigUInt64LE(f.platformInfo ?? 0n, L.platformInfo.offset);
  b.writeUInt32LE(f.keyInfo ?? 7 << 2, L.keyInfo.offset);
  b.writeBigUInt64LE(f.reportedTcb ?? 0n, L.reportedTcb.offset);
  b.writeBigUInt64LE(f.committedTcb ?? 0n, L.committedTcb.offset);
  b.writeBigUInt64LE(f.launchTcb ?? 0n, L.launchTcb.offset);
  put(L.reportData, f.reportData, 'reportData');
  put(L.measurement, f.measurement, 'measurement');
  put(L.hostData, f.hostData, 'hostData');
  put(L.chipId, f.chipId, 'chipId');
  put(L.familyId, f.familyId, 'familyId');
  put(L.imageId, f.imageId, 'imageId');
  put(L.reportId, f.reportId, 'reportId');
  return b;
}
