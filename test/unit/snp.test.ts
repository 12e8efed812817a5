import assert from 'node:assert/strict';
import { createHash, sign, webcrypto, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import * as x509 from '@peculiar/x509';
import { isMembraneError } from '../../policy/errors.js';
import {
  buildSnpReport,
  parseSnpReport,
  SNP_LAYOUT,
  SNP_REPORT_SIZE,
  SNP_SIGNED_LENGTH,
  snpPolicyFlags,
  snpTcbParts,
} from '../../skr-client/snp/report.js';
import { checkSnpReport, splitPemChain, vcekTcb, verifySnpReport } from '../../skr-client/snp/verify.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixtures = resolve(root, '..', 'shared', 'fixtures', 'sev-snp');
const reportBytes = readFileSync(join(fixtures, 'snp_report.bin'));
const chainPem = readFileSync(join(fixtures, 'uvm_host_amd_certificate.pem'), 'utf8');
const hostJson = JSON.parse(readFileSync(join(fixtures, 'uvm_host_amd_certificate.json'), 'utf8')) as {
  tcbm: string;
  vcekCert: string;
  certificateChain: string;
};
const policy = Buffer.from(readFileSync(join(fixtures, 'uvm_security_policy.base64'), 'utf8'), 'base64');
const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest();
// Certificates in the fixture are valid 2022..2029; pin the instant so the suite does not rot.
const AT = new Date('2024-06-01T00:00:00Z');

// ---------- parser: every fact in the fixture README ----------

test('fixture report: size and README facts', () => {
  assert.equal(reportBytes.length, SNP_REPORT_SIZE);
  const r = parseSnpReport(reportBytes);
  assert.equal(r.version, 2);
  assert.equal(r.policy, 0x3001fn);
  assert.equal(r.vmpl, 0);
  assert.equal(r.sigAlgo, 1);
  const akey = sha256('{\n   "akey" : "avalue"\n}\n');
  assert.equal(akey.toString('hex'), 'ee986ff2bd7e3f22e29f640918627816cf8e23b9d9c312767168eab68c861c71');
  assert.deepEqual(r.reportData, Buffer.concat([akey, Buffer.alloc(32)]));
  assert.equal(
    r.hostData.toString('hex'),
    'cadd74f71ebb8fbf9782baab649612520f3c416bc5ce9ac768808ddc8d9b031c',
  );
  assert.deepEqual(r.hostData, sha256(policy));
  assert.equal(
    r.measurement.toString('hex'),
    '51068107cdc7ee3d89c7821b05bca6147eb77b2005ae759050fc049b65a1b0beabc65a9d857acecf23225f5ec76849f5',
  );
  assert.equal(r.reportedTcb, 0x7308000000000003n);
  assert.equal(r.reportedTcb, BigInt(`0x${hostJson.tcbm}`));
});

test('fixture report: every field at its ABI offset', () => {
  const r = parseSnpReport(reportBytes);
  const at = (f: { offset: number; size: number }) => reportBytes.subarray(f.offset, f.offset + f.size);
  const L = SNP_LAYOUT;
  const byteFields = [
    ['familyId', L.familyId],
    ['imageId', L.imageId],
    ['reportData', L.reportData],
    ['measurement', L.measurement],
    ['hostData', L.hostData],
    ['idKeyDigest', L.idKeyDigest],
    ['authorKeyDigest', L.authorKeyDigest],
    ['reportId', L.reportId],
    ['reportIdMa', L.reportIdMa],
    ['chipId', L.chipId],
  ] as const;
  for (const [name, f] of byteFields) {
    assert.deepEqual(r[name], Buffer.from(at(f)), name);
    assert.equal(r[name].length, f.size, `${name} size`);
  }
  const u64 = [
    ['policy', 0x08],
    ['currentTcb', 0x38],
    ['platformInfo', 0x40],
    ['reportedTcb', 0x180],
    ['committedTcb', 0x1e0],
    ['launchTcb', 0x1f0],
  ] as const;
  for (const [name, off] of u64) assert.equal(r[name], reportBytes.readBigUInt64LE(off), name);
  assert.equal(r.guestSvn, reportBytes.readUInt32LE(0x04));
  // README offsets, independently restated.
  assert.equal(L.reportData.offset, 0x50);
  assert.equal(L.measurement.offset, 0x90);
  assert.equal(L.hostData.offset, 0xc0);
  assert.equal(L.reportedTcb.offset, 0x180);
  assert.equal(L.chipId.offset, 0x1a0);
  assert.equal(L.signatureR.offset, 0x2a0);
  assert.equal(L.signatureS.offset, 0x2a0 + 72);
  // R and S: little-endian in the report, big-endian (48 bytes) in the parse.
  assert.equal(r.signature.r.length, 48);
  assert.deepEqual(r.signature.r, Buffer.from(reportBytes.subarray(0x2a0, 0x2a0 + 48)).reverse());
  assert.deepEqual(r.signature.s, Buffer.from(reportBytes.subarray(0x2e8, 0x2e8 + 48)).reverse());
  assert.equal(r.signingKey, 0); // VCEK
  assert.deepEqual(snpTcbParts(r.reportedTcb), { bootloader: 3, tee: 0, snp: 8, microcode: 115 });
  const flags = snpPolicyFlags(r.policy);
  assert.equal(flags.debug, false);
  assert.equal(flags.smt, true);
  assert.equal(flags.reservedMbo, true);
  assert.equal(flags.abiMinor, 0x1f);
});

test('parser copies its input and rejects wrong sizes / old versions', () => {
  const copy = Buffer.from(reportBytes);
  const r = parseSnpReport(copy);
  copy.fill(0);
  assert.equal(r.version, 2);
  assert.equal(r.raw[0], 2);
  for (const len of [0, 1183, 1185, 4000]) {
    assert.throws(
      () => parseSnpReport(Buffer.alloc(len)),
      (e) => isMembraneError(e, 'SNP_REPORT_INVALID') && /1184/.test(e.message),
    );
  }
  const v1 = Buffer.from(reportBytes);
  v1.writeUInt32LE(1, 0);
  assert.throws(
    () => parseSnpReport(v1),
    (e) => isMembraneError(e, 'SNP_REPORT_INVALID'),
  );
});

test('VCEK extensions encode the reported TCB (fixture)', () => {
  const [vcek] = splitPemChain(chainPem);
  const raw = new X509Certificate(vcek as string).raw;
  assert.equal(vcekTcb(raw), 0x7308000000000003n);
});

// ---------- verifier on the real fixture ----------

test('fixture: signature and chain verify; every check passes', () => {
  const v = verifySnpReport(reportBytes, chainPem, { tcbm: hostJson.tcbm, at: AT });
  assert.equal(v.ok, true);
  const byName = Object.fromEntries(v.checks.map((c) => [c.name, c.status]));
  for (const name of [
    'report-format',
    'signature-algorithm',
    'certificate-chain',
    'leaf-key',
    'report-signature',
    'leaf-signed-by-ask',
    'ask-signed-by-ark',
    'ark-self-signed',
    'ark-trusted',
    'certificate-validity',
    'leaf-tcb',
    'leaf-chip-id',
    'host-tcbm',
  ])
    assert.equal(byName[name], 'pass', name);
});

test('fixture: the JSON collateral (vcekCert + certificateChain) verifies the same', () => {
  const v = checkSnpReport(reportBytes, hostJson.vcekCert + hostJson.certificateChain, { at: AT });
  assert.equal(v.ok, true);
  assert.equal(v.checks.find((c) => c.name === 'host-tcbm')?.status, 'skip');
});

// Offsets covering each field, both halves of the signed region, and the signature.
const flipOffsets: Array<[string, number]> = [
  ...Object.entries(SNP_LAYOUT).flatMap(
    ([name, f]): Array<[string, number]> => [
      [`${name} first byte`, f.offset],
      [`${name} last byte`, f.offset + f.size - 1],
    ],
  ),
  ['reserved 0x04C', 0x4c],
  ['reserved 0x18B', 0x18b],
  ['reserved 0x1F8', 0x1f8],
  ['last signed byte 0x29F', SNP_SIGNED_LENGTH - 1],
  ['signature R low byte', 0x2a0],
  ['signature R byte 47', 0x2a0 + 47],
  ['signature R unused byte 48', 0x2a0 + 48],
  ['signature S low byte', 0x2e8],
  ['signature S byte 47', 0x2e8 + 47],
  ['signature S unused byte 71', 0x2e8 + 71],
  ['reserved after signature', 0x330],
  ['last byte of report', SNP_REPORT_SIZE - 1],
];
for (let off = 0; off < SNP_SIGNED_LENGTH; off += 37)
  flipOffsets.push([`signed region sweep 0x${off.toString(16)}`, off]);

for (const [what, off] of flipOffsets) {
  test(`flipping a byte at 0x${off.toString(16)} (${what}) fails verification`, () => {
    const bad = Buffer.from(reportBytes);
    bad[off] = (bad[off] as number) ^ 0x01;
    const v = checkSnpReport(bad, chainPem, { tcbm: hostJson.tcbm, at: AT });
    assert.equal(v.ok, false);
    assert.ok(v.checks.some((c) => c.status === 'fail'));
    assert.throws(
      () => verifySnpReport(bad, chainPem, { tcbm: hostJson.tcbm, at: AT }),
      (e) => isMembraneError(e, 'SNP_VERIFY_FAILED') && /check '/.test(e.message),
    );
  });
}

test('a flipped signed byte is reported by the report-signature check', () => {
  const bad = Buffer.from(reportBytes);
  bad[0xc0] = (bad[0xc0] as number) ^ 0x80; // host_data
  const v = checkSnpReport(bad, chainPem, { at: AT });
  assert.deepEqual(
    v.checks.filter((c) => c.status === 'fail').map((c) => c.name),
    ['report-signature'],
  );
});

// ---------- wrong chains ----------

test('wrong VCEK (another chip, same AMD roots) is refused', () => {
  const ctx = JSON.parse(
    Buffer.from(
      readFileSync(join(fixtures, 'security-context', 'host-amd-cert-base64'), 'utf8'),
      'base64',
    ).toString(),
  ) as { vcekCert: string; certificateChain: string };
  const v = checkSnpReport(reportBytes, ctx.vcekCert + ctx.certificateChain, { at: AT });
  assert.equal(v.ok, false);
  const failed = v.checks.filter((c) => c.status === 'fail').map((c) => c.name);
  assert.ok(failed.includes('report-signature'), failed.join());
  assert.ok(failed.includes('leaf-chip-id'), failed.join());
  // The chain itself is AMD's and fine.
  assert.equal(v.checks.find((c) => c.name === 'ark-trusted')?.status, 'pass');
});

test('chain in the wrong order, truncated, or empty is refused', () => {
  const [vcek, ask, ark] = splitPemChain(chainPem) as [string, string, string];
  const cases: Array<[string, string, string]> = [
    ['swapped', [ask, vcek, ark].join('\n'), 'leaf-key'],
    ['ASK missing', [vcek, ark].join('\n'), 'certificate-chain'],
    ['ARK replaced by ASK', [vcek, ask, ask].join('\n'), 'ark-self-signed'],
    ['empty', '', 'certificate-chain'],
    ['garbage PEM', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----', 'certificate-chain'],
  ];
  for (const [name, pem, check] of cases) {
    const v = checkSnpReport(reportBytes, pem, { at: AT });
    assert.equal(v.ok, false, name);
    assert.equal(v.checks.find((c) => c.name === check)?.status, 'fail', `${name}: ${check}`);
  }
});

test('host tcbm different from reported_tcb is refused', () => {
  const v = checkSnpReport(reportBytes, chainPem, { tcbm: '7308000000000004', at: AT });
  assert.equal(v.ok, false);
  assert.equal(v.checks.find((c) => c.name === 'host-tcbm')?.status, 'fail');
});

test('expired certificates are refused', () => {
  const v = checkSnpReport(reportBytes, chainPem, { at: new Date('2031-01-01T00:00:00Z') });
  assert.equal(v.checks.find((c) => c.name === 'certificate-validity')?.status, 'fail');
  assert.equal(v.ok, false);
});

// A self-made "AMD-like" chain that signs a report correctly must still fail: the root is not AMD's.
test('a correctly signed report under a forged root fails ark-trusted (and passes only when trusted explicitly)', async () => {
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const rsa = {
    name: 'RSASSA-PKCS1-v1_5',
    hash: 'SHA-384',
    publicExponent: new Uint8Array([1, 0, 1]),
    modulusLength: 2048,
  };
  const arkKeys = await webcrypto.subtle.generateKey(rsa, true, ['sign', 'verify']);
  const askKeys = await webcrypto.subtle.generateKey(rsa, true, ['sign', 'verify']);
  const ecdsa = { name: 'ECDSA', namedCurve: 'P-384', hash: 'SHA-384' };
  const vcekKeys = await webcrypto.subtle.generateKey(ecdsa, true, ['sign', 'verify']);
  const notBefore = new Date('2023-01-01T00:00:00Z');
  const notAfter = new Date('2030-01-01T00:00:00Z');
  const ca = [new x509.BasicConstraintsExtension(true, undefined, true)];
  const ark = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=ARK-Milan',
    notBefore,
    notAfter,
    keys: arkKeys,
    signingAlgorithm: rsa,
    extensions: ca,
  });
  const ask = await x509.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: 'CN=SEV-Milan',
    issuer: ark.subject,
    notBefore,
    notAfter,
    publicKey: askKeys.publicKey,
    signingKey: arkKeys.privateKey,
    signingAlgorithm: rsa,
    extensions: ca,
  });
  const r = parseSnpReport(reportBytes);
  const vcek = await x509.X509CertificateGenerator.create({
    serialNumber: '03',
    subject: 'CN=SEV-VCEK',
    issuer: ask.subject,
    notBefore,
    notAfter,
    publicKey: vcekKeys.publicKey,
    signingKey: askKeys.privateKey,
    signingAlgorithm: rsa,
    extensions: [new x509.Extension('1.3.6.1.4.1.3704.1.4', false, r.chipId)],
  });
  // Re-sign the fixture's signed region with the forged VCEK.
  const forged = Buffer.from(reportBytes);
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', vcekKeys.privateKey));
  const sig = sign('sha384', forged.subarray(0, SNP_SIGNED_LENGTH), {
    key: pkcs8,
    format: 'der',
    type: 'pkcs8',
    dsaEncoding: 'ieee-p1363',
  });
  forged.fill(0, 0x2a0, 0x2a0 + 144);
  Buffer.from(sig.subarray(0, 48)).reverse().copy(forged, 0x2a0);
  Buffer.from(sig.subarray(48)).reverse().copy(forged, 0x2e8);
  const pem = [vcek, ask, ark].map((c) => c.toString('pem')).join('\n');

  const v = checkSnpReport(forged, pem, { at: AT });
  const status = Object.fromEntries(v.checks.map((c) => [c.name, c.status]));
  assert.equal(status['report-signature'], 'pass');
  assert.equal(status['leaf-signed-by-ask'], 'pass');
  assert.equal(status['ask-signed-by-ark'], 'pass');
  assert.equal(status['ark-self-signed'], 'pass');
  assert.equal(status['ark-trusted'], 'fail');
  assert.equal(v.ok, false);
  assert.throws(() => verifySnpReport(forged, pem, { at: AT }), /ark-trusted/);

  const trusted = checkSnpReport(forged, pem, { at: AT, trustedArks: [ark.toString('pem')] });
  assert.equal(trusted.ok, true, JSON.stringify(trusted.checks.filter((c) => c.status === 'fail')));
  // And the fixture's real signature no longer verifies under the forged VCEK.
  assert.equal(
    checkSnpReport(reportBytes, pem, { at: AT }).checks.find((c) => c.name === 'report-signature')?.status,
    'fail',
  );
});

test('unsigned (virtual-style) report fails verification', () => {
  const unsigned = buildSnpReport({ hostData: sha256(policy), reportData: Buffer.alloc(64, 1) });
  const v = checkSnpReport(unsigned, chainPem, { at: AT });
  assert.equal(v.ok, false);
  assert.equal(v.checks.find((c) => c.name === 'signature-algorithm')?.status, 'fail');
});

test('buildSnpReport round-trips through the parser', () => {
  const b = buildSnpReport({
    version: 2,
    policy: 0x30000n,
    hostData: Buffer.alloc(32, 0xaa),
    measurement: Buffer.alloc(48, 0xbb),
    reportData: Buffer.alloc(64, 0xcc),
    reportedTcb: 0x7308000000000003n,
  });
  const r = parseSnpReport(b);
  assert.equal(r.policy, 0x30000n);
  assert.equal(snpPolicyFlags(r.policy).debug, false);
  assert.deepEqual(r.hostData, Buffer.alloc(32, 0xaa));
  assert.deepEqual(r.measurement, Buffer.alloc(48, 0xbb));
  assert.deepEqual(r.reportData, Buffer.alloc(64, 0xcc));
  assert.equal(r.sigAlgo, 0);
  assert.deepEqual(r.signature.r, Buffer.alloc(48));
  assert.throws(
    () => buildSnpReport({ hostData: Buffer.alloc(31) }),
    (e) => isMembraneError(e, 'SNP_REPORT_INVALID'),
  );
});
