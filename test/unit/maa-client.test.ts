/**
 * MAA client against a loopback mock written from the public MAA REST description
 * (POST /attest/SevSnpVm, GET /.well-known/openid-configuration, GET /certs whose keys
 * carry only x5c, as real MAA publishes them).
 */
import assert from 'node:assert/strict';
import {
  constants,
  createHash,
  createPublicKey,
  privateDecrypt,
  publicEncrypt,
  webcrypto,
} from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import * as x509 from '@peculiar/x509';
import { calculateJwkThumbprint, SignJWT } from 'jose';
import { isMembraneError } from '../../policy/errors.js';
import type { Evidence } from '../../skr-client/evidence/types.js';
import {
  attestSevSnp,
  base64UrlPadded,
  buildAttestSevSnpRequest,
  createRuntimeKey,
  normaliseEndpoint,
  type RuntimeKey,
} from '../../skr-client/maa/client.js';

x509.cryptoProvider.set(webcrypto);

type Mode =
  | 'ok'
  | 'expired'
  | 'not-yet-valid'
  | 'wrong-iss'
  | 'bad-sig'
  | 'unknown-kid'
  | 'other-runtime'
  | 'foreign-jwks'
  | 'hs256'
  | 'no-token'
  | 'flaky';

const signAlg = {
  name: 'RSASSA-PKCS1-v1_5',
  hash: 'SHA-256',
  publicExponent: new Uint8Array([1, 0, 1]),
  modulusLength: 2048,
};
const KID = 'maa-test-signing-key';
let server: Server;
let base: string;
let mode: Mode = 'ok';
let calls = 0;
let lastRequest: { url: string; contentType: string; body: Record<string, unknown> } | undefined;
let signingKey: webcrypto.CryptoKey;
let otherKey: webcrypto.CryptoKey;
let certDer: Buffer;
let runtime: RuntimeKey;

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

function fail(status: number, code: string, message: string) {
  return { status, body: { error: { code, message } } };
}

/** What the mock MAA checks, per the REST description and the sidecar's request shape. */
function attest(
  body: Record<string, unknown>,
): { status: number; body: unknown } | { runtime: unknown; reportData: Buffer } {
  const rd = body.runtimeData as { data?: string; dataType?: string } | undefined;
  if (typeof body.report !== 'string' || !rd || typeof rd.data !== 'string')
    return fail(400, 'InvalidParameter', 'report and runtimeData are required');
  if (rd.dataType !== 'JSON') return fail(400, 'InvalidParameter', 'runtimeData.dataType must be JSON');
  const report = JSON.parse(Buffer.from(body.report, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
  if (typeof report.SnpReport !== 'string') return fail(400, 'InvalidParameter', 'SnpReport missing');
  const snp = Buffer.from(report.SnpReport, 'base64url');
  if (snp.length !== 1184) return fail(400, 'InvalidParameter', 'SnpReport must be 1184 bytes');
  const runtimeBytes = Buffer.from(rd.data, 'base64url');
  const reportData = snp.subarray(0x50, 0x90);
  const digest = createHash('sha256').update(runtimeBytes).digest();
  if (!reportData.subarray(0, 32).equals(digest) || reportData.subarray(32).some((b) => b !== 0))
    return fail(400, 'InvalidParameter', 'report_data does not match the runtime data hash');
  return { runtime: JSON.parse(runtimeBytes.toString('utf8')), reportData };
}

before(async () => {
  const keys = await webcrypto.subtle.generateKey(signAlg, true, ['sign', 'verify']);
  signingKey = keys.privateKey;
  otherKey = (await webcrypto.subtle.generateKey(signAlg, true, ['sign', 'verify'])).privateKey;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: '01',
    name: 'CN=https://mock.attest.local',
    notBefore: new Date(Date.now() - 3600_000),
    notAfter: new Date(Date.now() + 86400_000),
    signingAlgorithm: signAlg,
    keys,
  });
  certDer = Buffer.from(cert.rawData);

  server = createServer(async (req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', base);
    if (req.method === 'GET' && url.pathname === '/.well-known/openid-configuration')
      return send(200, {
        issuer: base,
        jwks_uri: mode === 'foreign-jwks' ? 'https://evil.example/certs' : `${base}/certs`,
      });
    if (req.method === 'GET' && url.pathname === '/certs')
      return send(200, { keys: [{ kid: KID, kty: 'RSA', x5c: [certDer.toString('base64')] }] });
    if (req.method === 'POST' && url.pathname === '/attest/SevSnpVm') {
      calls++;
      if (mode === 'flaky' && calls === 1)
        return send(503, { error: { code: 'ServiceUnavailable', message: 'busy' } });
      if (url.searchParams.get('api-version') !== '2022-08-01')
        return send(400, fail(400, 'BadApiVersion', 'x').body);
      const body = JSON.parse(await readBody(req)) as Record<string, unknown>;
      lastRequest = { url: req.url ?? '', contentType: String(req.headers['content-type']), body };
      const r = attest(body);
      if ('status' in r) return send(r.status, r.body);
      if (mode === 'no-token') return send(200, { notAToken: true });
      const now = Math.floor(Date.now() / 1000);
      const runtimeClaim =
        mode === 'other-runtime'
          ? { keys: [{ ...runtime.publicJwk, kid: 'someone-else', n: 'AQAB' }] }
          : r.runtime;
      const jwt = new SignJWT({
        'x-ms-attestation-type': 'sevsnpvm',
        'x-ms-compliance-status': 'azure-compliant-uvm',
        'x-ms-sevsnpvm-reportdata': r.reportData.toString('hex'),
        'x-ms-runtime': runtimeClaim,
        nonce: body.nonce,
      })
        .setProtectedHeader({
          alg: 'RS256',
          kid: mode === 'unknown-kid' ? 'rotated-away' : KID,
          jku: `${base}/certs`,
          typ: 'JWT',
        })
        .setIssuer(mode === 'wrong-iss' ? 'https://someone-else.attest.azure.net' : base)
        .setIssuedAt(now)
        .setNotBefore(mode === 'not-yet-valid' ? now + 3600 : now)
        .setExpirationTime(mode === 'expired' ? now - 3600 : now + 3600);
      if (mode === 'hs256') {
        const hs = await new SignJWT({ 'x-ms-runtime': runtimeClaim })
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer(base)
          .setExpirationTime('1h')
          .sign(new Uint8Array(32));
        return send(200, { token: hs });
      }
      return send(200, { token: await jwt.sign(mode === 'bad-sig' ? otherKey : signingKey) });
    }
    send(404, { error: { code: 'NotFound', message: 'no such route' } });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  runtime = await createRuntimeKey();
});

after(() => {
  server.closeAllConnections();
  server.close();
});

beforeEach(() => {
  mode = 'ok';
  calls = 0;
  lastRequest = undefined;
});

function evidenceFor(reportData: Buffer, overrides: Partial<Evidence['collateral']> = {}): Evidence {
  const report = Buffer.alloc(1184);
  report.writeUInt32LE(2, 0); // version
  reportData.copy(report, 0x50);
  return {
    provider: 'virtual',
    source: 'test',
    report,
    collateral: {
      vcekCertChainPem: '-----BEGIN CERTIFICATE-----\nTUFB\n-----END CERTIFICATE-----\n',
      uvmReferenceInfo: Buffer.from([0xd2, 0x84, 0xfb, 0xff]),
      ...overrides,
    },
  };
}

test('createRuntimeKey: RSA-2048 JWK with thumbprint kid, exact runtime data and report data', async () => {
  const rk = await createRuntimeKey();
  assert.equal(rk.publicJwk.kty, 'RSA');
  assert.deepEqual(rk.publicJwk.key_ops, ['encrypt']);
  assert.equal(Buffer.from(rk.publicJwk.n!, 'base64url').length, 256);
  assert.equal(
    rk.publicJwk.kid,
    await calculateJwkThumbprint({ kty: 'RSA', n: rk.publicJwk.n, e: rk.publicJwk.e }),
  );
  assert.equal(rk.runtimeData.toString('utf8'), JSON.stringify({ keys: [rk.publicJwk] }));
  assert.equal(rk.reportData.length, 64);
  assert.deepEqual(rk.reportData.subarray(0, 32), createHash('sha256').update(rk.runtimeData).digest());
  assert.ok(rk.reportData.subarray(32).every((b) => b === 0));
  // The private key never travels with the object.
  assert.ok(!Object.keys(rk).includes('privateKey'));
  assert.ok(!JSON.stringify(rk).includes('privateKey'));
  assert.equal(rk.privateKey.type, 'private');
  const pub = createPublicKey({ key: { kty: 'RSA', n: rk.publicJwk.n!, e: rk.publicJwk.e! }, format: 'jwk' });
  const ct = publicEncrypt({ key: pub, oaepHash: 'sha256' }, Buffer.from('dek'));
  assert.equal(
    privateDecrypt(
      { key: rk.privateKey, oaepHash: 'sha256', padding: constants.RSA_PKCS1_OAEP_PADDING },
      ct,
    ).toString(),
    'dek',
  );
  assert.notEqual((await createRuntimeKey()).publicJwk.kid, rk.publicJwk.kid);
});

const b64Cases: Array<[number[], string]> = [
  [[], ''],
  [[0xfb], '-w=='],
  [[0xfb, 0xff], '-_8='],
  [[0xfb, 0xff, 0xbf], '-_-_'],
];
for (const [bytes, expected] of b64Cases)
  test(`base64UrlPadded(${JSON.stringify(bytes)}) = ${JSON.stringify(expected)} (Go base64.URLEncoding)`, () => {
    assert.equal(base64UrlPadded(Buffer.from(bytes)), expected);
  });

test('buildAttestSevSnpRequest: the sidecar encodings, Endorsements as a base64url JSON string', () => {
  const ev = evidenceFor(runtime.reportData);
  const req = buildAttestSevSnpRequest(ev, runtime.runtimeData, '1234');
  assert.deepEqual(Object.keys(req), ['report', 'runtimeData', 'nonce']);
  assert.equal(req.nonce, '1234');
  assert.deepEqual(req.runtimeData, { data: base64UrlPadded(runtime.runtimeData), dataType: 'JSON' });
  const inner = JSON.parse(Buffer.from(req.report, 'base64url').toString('utf8')) as Record<string, string>;
  assert.deepEqual(Object.keys(inner), ['SnpReport', 'VcekCertChain', 'Endorsements']);
  assert.equal(inner.SnpReport, base64UrlPadded(ev.report));
  assert.equal(
    Buffer.from(inner.VcekCertChain!, 'base64url').toString('utf8'),
    ev.collateral.vcekCertChainPem,
  );
  assert.equal(
    Buffer.from(inner.Endorsements!, 'base64url').toString('utf8'),
    JSON.stringify({ Uvm: [base64UrlPadded(ev.collateral.uvmReferenceInfo!)] }),
  );
  assert.ok(inner.Endorsements!.includes('=') || inner.Endorsements!.length % 4 === 0);
  const noRef = buildAttestSevSnpRequest(
    evidenceFor(runtime.reportData, { uvmReferenceInfo: undefined }),
    runtime.runtimeData,
    '1',
  );
  assert.deepEqual(Object.keys(JSON.parse(Buffer.from(noRef.report, 'base64url').toString('utf8'))), [
    'SnpReport',
    'VcekCertChain',
  ]);
});

test('attestSevSnp: posts to /attest/SevSnpVm and returns the verified token and claims', async () => {
  const { token, claims } = await attestSevSnp({
    endpoint: `${base}/`,
    evidence: evidenceFor(runtime.reportData),
    runtime,
    nonce: '77',
  });
  assert.equal(token.split('.').length, 3);
  assert.equal(claims.iss, base);
  assert.equal(claims['x-ms-attestation-type'], 'sevsnpvm');
  assert.deepEqual(claims['x-ms-runtime'], { keys: [runtime.publicJwk] });
  assert.equal(claims.nonce, '77');
  assert.equal(lastRequest?.url, '/attest/SevSnpVm?api-version=2022-08-01');
  assert.equal(lastRequest?.contentType, 'application/json');
  assert.equal(typeof lastRequest?.body.nonce, 'string');
});

test('attestSevSnp: a default nonce is a fresh decimal string', async () => {
  await attestSevSnp({ endpoint: base, evidence: evidenceFor(runtime.reportData), runtime });
  assert.match(String(lastRequest?.body.nonce), /^\d+$/);
});

test('attestSevSnp: retries a 503 and then succeeds', async () => {
  mode = 'flaky';
  const { claims } = await attestSevSnp({
    endpoint: base,
    evidence: evidenceFor(runtime.reportData),
    runtime,
  });
  assert.equal(calls, 2);
  assert.equal(claims.iss, base);
});

const failures: Array<[Mode, string, RegExp]> = [
  ['expired', 'MAA_TOKEN_INVALID', /token has expired \(check this machine clock\)/],
  ['not-yet-valid', 'MAA_TOKEN_INVALID', /claim "nbf" is invalid.*clock/],
  [
    'wrong-iss',
    'MAA_TOKEN_INVALID',
    /issuer https:\/\/someone-else\.attest\.azure\.net is not the attestation endpoint/,
  ],
  ['bad-sig', 'MAA_TOKEN_INVALID', /signature does not verify against the issuer's signing keys/],
  ['unknown-kid', 'MAA_TOKEN_INVALID', /signed with key rotated-away, which the issuer's JWKS does not list/],
  ['other-runtime', 'MAA_TOKEN_INVALID', /x-ms-runtime\.keys does not carry this runtime key/],
  [
    'foreign-jwks',
    'MAA_BAD_RESPONSE',
    /jwks_uri https:\/\/evil\.example is not on the attestation endpoint's origin/,
  ],
  ['hs256', 'MAA_TOKEN_INVALID', /token algorithm HS256 is not RS256/],
  ['no-token', 'MAA_BAD_RESPONSE', /answered without a "token"/],
];
for (const [m, code, message] of failures)
  test(`attestSevSnp: refuses a token when the mock is '${m}'`, async () => {
    mode = m;
    await assert.rejects(
      attestSevSnp({ endpoint: base, evidence: evidenceFor(runtime.reportData), runtime }),
      (e: unknown) => {
        assert.ok(isMembraneError(e, code), `expected ${code}, got ${String(e)}`);
        assert.match(e.message, message);
        return true;
      },
    );
  });

test('attestSevSnp: evidence not bound to the runtime key is refused before any call', async () => {
  const other = Buffer.alloc(64, 7);
  await assert.rejects(
    attestSevSnp({ endpoint: base, evidence: evidenceFor(other), runtime }),
    (e: unknown) =>
      isMembraneError(e, 'MAA_EVIDENCE_MISMATCH') &&
      /request the evidence with runtime\.reportData/.test(e.message),
  );
  assert.equal(calls, 0);
});

test('attestSevSnp: an HTTP 400 from MAA becomes an actionable error', async () => {
  // A runtime key whose runtime data is altered after the report was made: MAA's binding check fails.
  const tampered = { ...runtime, privateKey: runtime.privateKey, runtimeData: Buffer.from('{"keys":[]}') };
  await assert.rejects(
    attestSevSnp({ endpoint: base, evidence: evidenceFor(runtime.reportData), runtime: tampered }),
    (e: unknown) => {
      assert.ok(isMembraneError(e, 'MAA_REJECTED'), String(e));
      assert.match(
        e.message,
        /rejected the evidence \(HTTP 400: InvalidParameter: report_data does not match/,
      );
      assert.match(e.message, /virtual \(unsigned\) evidence is accepted only by the local MAA emulator/);
      assert.equal(e.where, `${base}/attest/SevSnpVm`);
      return true;
    },
  );
});

test('attestSevSnp: unreachable endpoint is a network error naming MAA', async () => {
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const port = (dead.address() as AddressInfo).port;
  await new Promise<void>((r) => dead.close(() => r()));
  await assert.rejects(
    attestSevSnp({
      endpoint: `http://127.0.0.1:${port}`,
      evidence: evidenceFor(runtime.reportData),
      runtime,
    }),
    (e: unknown) =>
      isMembraneError(e, 'HTTP_NETWORK') &&
      /Microsoft Azure Attestation attest could not be reached/.test(e.message),
  );
});

const endpointCases: Array<[string, string | RegExp]> = [
  ['https://x.eus2.attest.azure.net/', 'https://x.eus2.attest.azure.net'],
  ['x.eus2.attest.azure.net', 'https://x.eus2.attest.azure.net'],
  ['http://127.0.0.1:8080', 'http://127.0.0.1:8080'],
  ['http://localhost:1/', 'http://localhost:1'],
  ['http://x.eus2.attest.azure.net', /must use https/],
  ['https://x.attest.azure.net/?api-version=1', /must not carry a query/],
  ['http://[', /not a valid attestation endpoint URL/],
];
for (const [input, expected] of endpointCases)
  test(`normaliseEndpoint(${input})`, () => {
    if (typeof expected === 'string') assert.equal(normaliseEndpoint(input), expected);
    else assert.throws(() => normaliseEndpoint(input), expected);
  });
