/**
 * Offline verification of an SEV-SNP attestation report against its AMD
 * certificate chain (VCEK or VLEK -> ASK/ASVK -> ARK):
 *   - the report's ECDSA P-384/SHA-384 signature over bytes 0x000..0x29F
 *     checks with the leaf certificate's public key;
 *   - each certificate is signed by the next (AMD signs ASK and ARK with
 *     RSASSA-PSS/SHA-384, which node:crypto's X509Certificate handles), the
 *     ARK is self-signed and is one of AMD's published roots (pinned);
 *   - the leaf's TCB and hardware-ID extensions match the report, and the
 *     host's `tcbm` (when given) equals reported_tcb.
 * Every check is reported individually so operators see exactly what failed;
 * `verifySnpReport` turns any failure into a MembraneError naming the check.
 */
import { createHash, type KeyObject, verify as verifySig, X509Certificate } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';
import {
  P384_SCALAR_SIZE,
  parseSnpReport,
  SNP_LAYOUT,
  SNP_REPORT_SIZE,
  SNP_SIG_ALGO_ECDSA_P384_SHA384,
  SNP_SIGNED_LENGTH,
  type SnpReport,
  tcbHex,
} from './report.js';

/**
 * SHA-256 of the DER of AMD's self-signed root certificates, as served by
 * https://kdsintf.amd.com/vcek/v1/<product>/cert_chain. Milan is checked by the
 * unit test against the real fixture; Genoa is the published value. Other
 * products (e.g. Turin) can be trusted explicitly with `trustedArks`.
 */
export const AMD_ARK_SHA256: Readonly<Record<string, string>> = {
  'ARK-Milan': '69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd',
  'ARK-Genoa': '4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1',
};

export type CheckName =
  | 'report-format'
  | 'signature-algorithm'
  | 'certificate-chain'
  | 'leaf-key'
  | 'report-signature'
  | 'leaf-signed-by-ask'
  | 'ask-signed-by-ark'
  | 'ark-self-signed'
  | 'ark-trusted'
  | 'certificate-validity'
  | 'leaf-tcb'
  | 'leaf-chip-id'
  | 'host-tcbm';

export interface SnpCheck {
  name: CheckName;
  status: 'pass' | 'fail' | 'skip';
  detail: string;
}

export interface SnpVerdict {
  ok: boolean;
  checks: SnpCheck[];
  /** Parsed report, when the bytes parsed at all. */
  report?: SnpReport;
}

export interface SnpVerifyOptions {
  /** Host-provided TCB (hex string as in Azure's THIM JSON `tcbm`); compared with reported_tcb. */
  tcbm?: string;
  /** Additional trusted ARK certificates (PEM) — e.g. for a product not pinned here. */
  trustedArks?: string[];
  /** Instant at which certificate validity is checked. Default: now. */
  at?: Date;
}

const PEM_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Splits a PEM bundle into certificates, in order. */
export function splitPemChain(pem: string): string[] {
  return pem.match(PEM_RE) ?? [];
}

function cn(name: string): string {
  const m = /(?:^|\n)CN=([^\n]*)/.exec(name);
  return m?.[1] ?? '';
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

// ---- minimal DER reading, enough for the AMD VCEK extensions ----

interface Tlv {
  tag: number;
  start: number; // of the value
  end: number;
}
function readTlv(der: Uint8Array, pos: number): Tlv {
  const tag = der[pos];
  let len = der[pos + 1];
  if (tag === undefined || len === undefined) throw new Error('truncated DER');
  let p = pos + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new Error('unsupported DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[p++] as number);
  }
  if (p + len > der.length) throw new Error('truncated DER');
  return { tag, start: p, end: p + len };
}
function children(der: Uint8Array, t: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let p = t.start; p < t.end; ) {
    const c = readTlv(der, p);
    out.push(c);
    p = c.end;
  }
  return out;
}
function oidString(b: Uint8Array): string {
  const parts: number[] = [];
  const first = b[0] as number;
  parts.push(Math.floor(first / 40), first % 40);
  let v = 0;
  for (let i = 1; i < b.length; i++) {
    const x = b[i] as number;
    v = v * 128 + (x & 0x7f);
    if (!(x & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** X.509 v3 extensions as OID -> extnValue contents (the bytes inside the OCTET STRING). */
export function certExtensions(der: Uint8Array): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const cert = readTlv(der, 0);
  const tbs = children(der, cert)[0];
  if (!tbs) return out;
  for (const field of children(der, tbs)) {
    if (field.tag !== 0xa3) continue; // [3] EXPLICIT Extensions
    const seq = children(der, field)[0];
    if (!seq) continue;
    for (const ext of children(der, seq)) {
      const parts = children(der, ext);
      const oid = parts[0];
      const value = parts[parts.length - 1];
      if (oid?.tag !== 0x06 || value?.tag !== 0x04) continue;
      out.set(oidString(der.subarray(oid.start, oid.end)), Buffer.from(der.subarray(value.start, value.end)));
    }
  }
  return out;
}

/** DER INTEGER (small, non-negative) -> number. */
function derSmallInt(v: Buffer): number | undefined {
  try {
    const t = readTlv(v, 0);
    if (t.tag !== 0x02 || t.end - t.start > 4) return undefined;
    let n = 0;
    for (let i = t.start; i < t.end; i++) n = n * 256 + (v[i] as number);
    return n;
  } catch {
    return undefined;
  }
}

/** AMD VCEK extension OIDs (VCEK/KDS specification). */
const OID_HWID = '1.3.6.1.4.1.3704.1.4';
const TCB_OIDS: ReadonlyArray<[string, number]> = [
  // [OID, byte index in the Milan/Genoa TCB_VERSION]
  ['1.3.6.1.4.1.3704.1.3.1', 0], // blSPL
  ['1.3.6.1.4.1.3704.1.3.2', 1], // teeSPL
  ['1.3.6.1.4.1.3704.1.3.4', 2], // spl_4
  ['1.3.6.1.4.1.3704.1.3.5', 3], // spl_5
  ['1.3.6.1.4.1.3704.1.3.6', 4], // spl_6
  ['1.3.6.1.4.1.3704.1.3.7', 5], // spl_7
  ['1.3.6.1.4.1.3704.1.3.3', 6], // snpSPL
  ['1.3.6.1.4.1.3704.1.3.8', 7], // ucodeSPL
];
const OID_FMC_SPL = '1.3.6.1.4.1.3704.1.3.9';

/** TCB encoded in a VCEK's extensions, laid out like the report's TCB_VERSION (Milan/Genoa). */
export function vcekTcb(der: Uint8Array): bigint | undefined {
  const ext = certExtensions(der);
  // Turin's VCEK carries an FMC SPL and a different byte layout; not decoded here.
  if (ext.has(OID_FMC_SPL)) return undefined;
  let tcb = 0n;
  let seen = 0;
  for (const [oid, idx] of TCB_OIDS) {
    const v = ext.get(oid);
    if (!v) continue;
    const n = derSmallInt(v);
    if (n === undefined || n > 255) return undefined;
    tcb |= BigInt(n) << BigInt(8 * idx);
    seen++;
  }
  return seen ? tcb : undefined;
}

/** Report signature as IEEE-P1363 (r || s, 48 bytes each, big-endian). */
export function snpSignatureP1363(report: SnpReport): Buffer {
  return Buffer.concat([report.signature.r, report.signature.s]);
}

/** Bytes that the ABI requires to be zero outside the signed region. */
function unsignedPaddingOk(raw: Buffer): string | undefined {
  const zero = (a: number, b: number) => raw.subarray(a, b).every((x) => x === 0);
  const r = SNP_LAYOUT.signatureR.offset;
  const s = SNP_LAYOUT.signatureS.offset;
  if (!zero(r + P384_SCALAR_SIZE, r + 72)) return 'signature R has non-zero bytes above the P-384 scalar';
  if (!zero(s + P384_SCALAR_SIZE, s + 72)) return 'signature S has non-zero bytes above the P-384 scalar';
  if (!zero(s + 72, SNP_REPORT_SIZE)) return 'reserved bytes after the signature are not zero';
  return undefined;
}

/**
 * Runs every check and returns the verdict without throwing (for `attest
 * verify` and diagnostics). Later checks are skipped when their inputs are
 * unavailable, never silently passed.
 */
export function checkSnpReport(
  reportBytes: Uint8Array,
  certChainPem: string,
  opts: SnpVerifyOptions = {},
): SnpVerdict {
  const checks: SnpCheck[] = [];
  const add = (name: CheckName, status: SnpCheck['status'], detail: string) =>
    checks.push({ name, status, detail });
  const done = (report?: SnpReport): SnpVerdict => ({
    ok: checks.every((c) => c.status !== 'fail'),
    checks,
    report,
  });

  let report: SnpReport | undefined;
  try {
    report = parseSnpReport(reportBytes);
    const pad = unsignedPaddingOk(report.raw);
    if (pad) add('report-format', 'fail', pad);
    else add('report-format', 'pass', `${SNP_REPORT_SIZE} bytes, version ${report.version}`);
  } catch (e) {
    add('report-format', 'fail', (e as Error).message);
  }

  if (report) {
    if (report.sigAlgo === SNP_SIG_ALGO_ECDSA_P384_SHA384)
      add('signature-algorithm', 'pass', 'ECDSA P-384 with SHA-384');
    else
      add(
        'signature-algorithm',
        'fail',
        `signature algorithm ${report.sigAlgo}, expected 1 (ECDSA P-384/SHA-384)`,
      );
  } else add('signature-algorithm', 'skip', 'report did not parse');

  // ---- certificates ----
  let chain: X509Certificate[] = [];
  try {
    chain = splitPemChain(certChainPem).map((p) => new X509Certificate(p));
    if (chain.length !== 3)
      add('certificate-chain', 'fail', `expected 3 certificates (VCEK, ASK, ARK), found ${chain.length}`);
    else add('certificate-chain', 'pass', chain.map((c) => cn(c.subject)).join(' -> '));
  } catch (e) {
    add('certificate-chain', 'fail', `certificate does not parse: ${(e as Error).message}`);
    chain = [];
  }
  const [leaf, ask, ark] = chain.length === 3 ? chain : [];

  let leafKey: KeyObject | undefined;
  if (leaf) {
    const name = cn(leaf.subject);
    const key = leaf.publicKey;
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const wantName = report?.signingKey === 1 ? 'SEV-VLEK' : 'SEV-VCEK';
    if (key.asymmetricKeyType !== 'ec' || curve !== 'secp384r1')
      add(
        'leaf-key',
        'fail',
        `leaf ${name} key is ${key.asymmetricKeyType} ${curve ?? ''}, expected EC P-384`,
      );
    else if (report && report.signingKey !== 0 && report.signingKey !== 1)
      add('leaf-key', 'fail', `report SIGNING_KEY is ${report.signingKey}: not signed by a VCEK or VLEK`);
    else if (name !== wantName)
      add(
        'leaf-key',
        'fail',
        `leaf certificate is ${name || '(no CN)'}, the report says it is signed by the ${wantName}`,
      );
    else {
      add('leaf-key', 'pass', `${name}, EC P-384`);
      leafKey = key;
    }
  } else add('leaf-key', 'skip', 'no certificate chain');

  if (report && leafKey) {
    const ok = verifySig(
      'sha384',
      report.raw.subarray(0, SNP_SIGNED_LENGTH),
      { key: leafKey, dsaEncoding: 'ieee-p1363' },
      snpSignatureP1363(report),
    );
    add(
      'report-signature',
      ok ? 'pass' : 'fail',
      ok
        ? `verifies over bytes 0x000..0x${(SNP_SIGNED_LENGTH - 1).toString(16)} with the ${cn(leaf?.subject ?? '')} key`
        : 'ECDSA signature does not verify with the leaf certificate key (report altered or wrong VCEK)',
    );
  } else add('report-signature', 'skip', 'report or leaf key unavailable');

  const signedBy = (name: CheckName, child: X509Certificate, parent: X509Certificate) => {
    const ok = child.checkIssued(parent) && child.verify(parent.publicKey);
    add(
      name,
      ok ? 'pass' : 'fail',
      ok
        ? `${cn(child.subject)} signed by ${cn(parent.subject)}`
        : `${cn(child.subject)} is not signed by ${cn(parent.subject)}`,
    );
  };
  if (leaf && ask && ark) {
    signedBy('leaf-signed-by-ask', leaf, ask);
    signedBy('ask-signed-by-ark', ask, ark);
    const self = ark.checkIssued(ark) && ark.verify(ark.publicKey);
    add(
      'ark-self-signed',
      self ? 'pass' : 'fail',
      self ? `${cn(ark.subject)} is self-signed` : 'ARK is not self-signed',
    );

    const fp = sha256(ark.raw);
    const extra = (opts.trustedArks ?? [])
      .flatMap(splitPemChain)
      .map((p) => sha256(new X509Certificate(p).raw));
    const pinned = Object.entries(AMD_ARK_SHA256).find(([, v]) => v === fp)?.[0];
    if (pinned) add('ark-trusted', 'pass', `AMD root ${pinned} (sha256 ${fp.slice(0, 16)}…)`);
    else if (extra.includes(fp))
      add('ark-trusted', 'pass', `explicitly trusted root (sha256 ${fp.slice(0, 16)}…)`);
    else add('ark-trusted', 'fail', `ARK sha256 ${fp} is not a known AMD root key`);

    const at = opts.at ?? new Date();
    const expired = chain.filter((c) => new Date(c.validFrom) > at || new Date(c.validTo) < at);
    if (expired.length)
      add(
        'certificate-validity',
        'fail',
        `not valid at ${at.toISOString()}: ${expired.map((c) => `${cn(c.subject)} (${c.validFrom} .. ${c.validTo})`).join(', ')}`,
      );
    else add('certificate-validity', 'pass', `all valid at ${at.toISOString()}`);
  } else {
    for (const n of [
      'leaf-signed-by-ask',
      'ask-signed-by-ark',
      'ark-self-signed',
      'ark-trusted',
      'certificate-validity',
    ] as const)
      add(n, 'skip', 'no certificate chain');
  }

  // ---- leaf extensions vs. report ----
  if (report && leaf && leafKey) {
    let ext: Map<string, Buffer> | undefined;
    try {
      ext = certExtensions(leaf.raw);
    } catch {
      ext = undefined;
    }
    const tcb = ext ? vcekTcb(leaf.raw) : undefined;
    if (tcb === undefined)
      add('leaf-tcb', 'skip', 'leaf carries no TCB extensions in the Milan/Genoa layout');
    else if (tcb === report.reportedTcb) add('leaf-tcb', 'pass', `leaf TCB 0x${tcbHex(tcb)} = reported_tcb`);
    else
      add(
        'leaf-tcb',
        'fail',
        `leaf TCB 0x${tcbHex(tcb)} differs from reported_tcb 0x${tcbHex(report.reportedTcb)}`,
      );

    const hwid = ext?.get(OID_HWID);
    if (report.signingKey === 1) add('leaf-chip-id', 'skip', 'VLEK is not bound to a chip');
    else if (report.maskChipKey || report.chipId.every((x) => x === 0))
      add('leaf-chip-id', 'skip', 'chip_id masked by the guest');
    else if (!hwid) add('leaf-chip-id', 'fail', 'VCEK has no hwID extension to compare with chip_id');
    else if (hwid.equals(report.chipId)) add('leaf-chip-id', 'pass', 'VCEK hwID = chip_id');
    else add('leaf-chip-id', 'fail', 'VCEK hwID differs from the report chip_id (VCEK of another chip)');
  } else {
    add('leaf-tcb', 'skip', 'report or leaf unavailable');
    add('leaf-chip-id', 'skip', 'report or leaf unavailable');
  }

  if (opts.tcbm === undefined) add('host-tcbm', 'skip', 'no host tcbm given');
  else if (!report) add('host-tcbm', 'skip', 'report did not parse');
  else if (!/^(0x)?[0-9a-fA-F]{1,16}$/.test(opts.tcbm))
    add('host-tcbm', 'fail', `tcbm "${opts.tcbm}" is not hex`);
  else {
    const t = BigInt(`0x${opts.tcbm.replace(/^0x/, '')}`);
    if (t === report.reportedTcb) add('host-tcbm', 'pass', `tcbm ${tcbHex(t)} = reported_tcb`);
    else
      add(
        'host-tcbm',
        'fail',
        `host tcbm ${tcbHex(t)} differs from reported_tcb ${tcbHex(report.reportedTcb)}`,
      );
  }
  return done(report);
}

/**
 * Verifies and returns the verdict, or throws MembraneError 'SNP_VERIFY_FAILED'
 * naming every failed check (first one first).
 */
export function verifySnpReport(
  reportBytes: Uint8Array,
  certChainPem: string,
  opts: SnpVerifyOptions = {},
): SnpVerdict {
  const v = checkSnpReport(reportBytes, certChainPem, opts);
  if (!v.ok) {
    const failed = v.checks.filter((c) => c.status === 'fail');
    throw new MembraneError(
      'SNP_VERIFY_FAILED',
      `SNP report verification failed: ${failed.map((c) => `check '${c.name}': ${c.detail}`).join('; ')}`,
    );
  }
  return v;
}
