/**
 * The emulators' refusals and wire shapes: what MAA and Key Vault would refuse,
 * the emulators refuse too, with Azure-style error bodies.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { isMembraneError } from '../../policy/errors.js';
import { releaseKey, staticToken } from '../../skr-client/akv/index.js';
import { type EmulatorCa, loadOrCreateCa } from '../../skr-client/emulators/ca.js';
import { type RunningEmulators, startEmulators } from '../../skr-client/emulators/index.js';
import { http } from '../../skr-client/http.js';
import {
  base64UrlPadded,
  createRuntimeKey,
  type RuntimeKey,
  verifyMaaToken,
} from '../../skr-client/maa/client.js';
import { buildSnpReport } from '../../skr-client/snp/report.js';

let emu: RunningEmulators;
let ca: EmulatorCa;
let dir: string;
let runtime: RuntimeKey;
const policyText = 'agreed policy';
const hostData = createHash('sha256').update(policyText).digest('hex');

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-emu-'));
  emu = await startEmulators({ dir, log: () => {} });
  ca = await loadOrCreateCa(dir); // the same files: lets the test sign tokens as the MAA emulator
  runtime = await createRuntimeKey();
});
after(async () => {
  await emu?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(base: string, method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown, auth = true) {
  const res = await http('test', `${base}${path}`, {
    method,
    headers: {
      'content-type': 'application/json',
      ...(auth ? { authorization: `Bearer ${emu.accessToken}` } : {}),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    ca: emu.caPem,
    retries: 0,
    accept: [400, 401, 403, 404, 405],
  });
  return { status: res.status, body: res.json<Record<string, unknown>>(), headers: res.headers };
}

function maaBody(report: Buffer, runtimeData: Buffer) {
  return {
    report: base64UrlPadded(
      Buffer.from(JSON.stringify({ SnpReport: base64UrlPadded(report), VcekCertChain: '' })),
    ),
    runtimeData: { data: base64UrlPadded(runtimeData), dataType: 'JSON' },
    nonce: '42',
  };
}
const virtualReport = (reportData: Buffer, extra: Parameters<typeof buildSnpReport>[0] = {}) =>
  buildSnpReport({ reportData, hostData: createHash('sha256').update(policyText).digest(), ...extra });

// ------------------------------------------------------------------ MAA

test('MAA: metadata and JWKS are published; an attest token verifies as MAA tokens do', async () => {
  const cfg = await call(emu.maaUrl, 'GET', '/.well-known/openid-configuration');
  assert.equal(cfg.body.issuer, emu.maaUrl);
  assert.equal(cfg.body.jwks_uri, `${emu.maaUrl}/certs`);
  const jwks = await call(emu.maaUrl, 'GET', '/certs');
  const key = (jwks.body.keys as Array<Record<string, unknown>>)[0]!;
  assert.equal(key.kty, 'RSA');
  assert.ok(Array.isArray(key.x5c) && key.x5c.length === 2);

  const res = await call(
    emu.maaUrl,
    'POST',
    '/attest/SevSnpVm?api-version=2022-08-01',
    maaBody(virtualReport(runtime.reportData), runtime.runtimeData),
  );
  assert.equal(res.status, 200);
  const token = res.body.token as string;
  assert.equal(decodeProtectedHeader(token).kid, key.kid);
  const claims = await verifyMaaToken(token, { endpoint: emu.maaUrl, ca: emu.caPem });
  for (const c of [
    'x-ms-compliance-status',
    'x-ms-sevsnpvm-launchmeasurement',
    'x-ms-sevsnpvm-guestsvn',
    'x-ms-ver',
    'jti',
    'nbf',
    'iat',
    'exp',
  ])
    assert.ok(c in claims, c);
  assert.equal(claims.nonce, '42');
  assert.equal(claims['x-ms-membrane-emulator'], true);
  assert.equal(claims['x-ms-sevsnpvm-launchmeasurement'], '0'.repeat(96));
});

test('MAA: a debug-enabled guest is reported as debuggable', async () => {
  const res = await call(
    emu.maaUrl,
    'POST',
    '/attest/SevSnpVm?api-version=2022-08-01',
    maaBody(virtualReport(runtime.reportData, { policy: 0x30000n | (1n << 19n) }), runtime.runtimeData),
  );
  assert.equal(decodeJwt(res.body.token as string)['x-ms-sevsnpvm-is-debuggable'], true);
});

const signed = virtualReport(Buffer.alloc(64));
signed.writeUInt32LE(1, 0x34); // sigAlgo ECDSA P-384
signed[0x2a0] = 7; // non-zero signature
const maaRefusals: Array<{ name: string; path: string; body: () => unknown; match: RegExp }> = [
  {
    name: 'no api-version',
    path: '/attest/SevSnpVm',
    body: () => maaBody(virtualReport(runtime.reportData), runtime.runtimeData),
    match: /api-version/,
  },
  {
    name: 'hardware (signed) report',
    path: '/attest/SevSnpVm?api-version=2022-08-01',
    body: () => maaBody(signed, Buffer.from('{}')),
    match: /only virtual/,
  },
  {
    name: 'runtime data not bound in report_data',
    path: '/attest/SevSnpVm?api-version=2022-08-01',
    body: () => maaBody(virtualReport(Buffer.alloc(64)), runtime.runtimeData),
    match: /report_data\[0:32\]/,
  },
  {
    name: 'report of the wrong size',
    path: '/attest/SevSnpVm?api-version=2022-08-01',
    body: () => maaBody(Buffer.alloc(100), runtime.runtimeData),
    match: /1184/,
  },
  {
    name: 'report not base64url',
    path: '/attest/SevSnpVm?api-version=2022-08-01',
    body: () => ({ report: '%%%' }),
    match: /base64url/,
  },
  {
    name: 'JSON runtime data that is not JSON',
    path: '/attest/SevSnpVm?api-version=2022-08-01',
    body: () => {
      const rd = Buffer.from('not json');
      const h = Buffer.alloc(64);
      createHash('sha256').update(rd).digest().copy(h);
      return maaBody(virtualReport(h), rd);
    },
    match: /not JSON/,
  },
];
for (const c of maaRefusals)
  test(`MAA refuses: ${c.name}`, async () => {
    const res = await call(emu.maaUrl, 'POST', c.path, c.body());
    assert.equal(res.status, 400);
    assert.match((res.body.error as { message: string }).message, c.match);
  });

// ------------------------------------------------------------------ Key Vault

const policy = (claims: Array<Record<string, unknown>>, authority?: string) => ({
  contentType: 'application/json; charset=utf-8',
  data: Buffer.from(
    JSON.stringify({ version: '1.0.0', anyOf: [{ authority: authority ?? emu.maaUrl, allOf: claims }] }),
  ).toString('base64url'),
});
const hostPolicy = () => policy([{ claim: 'x-ms-sevsnpvm-hostdata', equals: hostData }]);

/** A token signed with the MAA emulator's key, with the given claims. */
async function token(
  claims: Record<string, unknown>,
  opts: { exp?: number; iss?: string; key?: ReturnType<typeof generateKeyPairSync>['privateKey'] } = {},
) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({
    'x-ms-runtime': { keys: [runtime.publicJwk] },
    'x-ms-sevsnpvm-hostdata': hostData,
    'x-ms-attestation-type': 'sevsnpvm',
    ...claims,
  })
    .setProtectedHeader({ alg: 'RS256' })
    .setIssuer(opts.iss ?? emu.maaUrl)
    .setIssuedAt(now - 7200)
    .setExpirationTime(opts.exp ?? now + 600)
    .sign(opts.key ?? ca.maaSigning.privateKey);
}

test('Key Vault: create oct-HSM and RSA-HSM keys; GET shows public parts only', async () => {
  const oct = await call(emu.kvUrl, 'POST', '/keys/c-oct/create?api-version=7.4', {
    kty: 'oct-HSM',
    key_size: 256,
    attributes: { exportable: true },
    release_policy: hostPolicy(),
  });
  assert.equal(oct.status, 200);
  const kid = (oct.body.key as { kid: string }).kid;
  assert.match(kid, new RegExp(`^${emu.kvUrl}/keys/c-oct/[0-9a-f]{32}$`));
  const rsa = await call(emu.kvUrl, 'POST', '/keys/c-rsa/create?api-version=7.4', {
    kty: 'RSA-HSM',
    key_size: 2048,
    attributes: { exportable: true },
    release_policy: hostPolicy(),
  });
  const got = await call(emu.kvUrl, 'GET', `/keys/c-rsa?api-version=7.4`);
  const k = got.body.key as Record<string, unknown>;
  assert.equal(k.kty, 'RSA-HSM');
  assert.ok(typeof k.n === 'string' && !('d' in k) && !('key_hsm' in k));
  assert.deepEqual(got.body, rsa.body);
  assert.deepEqual(got.body.release_policy, hostPolicy());
  assert.equal((got.body.attributes as { exportable: boolean }).exportable, true);
});

const kvRefusals: Array<{
  name: string;
  method: 'GET' | 'PUT' | 'POST';
  path: string;
  body?: () => unknown;
  auth?: boolean;
  status: number;
  match: RegExp;
}> = [
  {
    name: 'no bearer token',
    method: 'GET',
    path: '/keys/c-oct?api-version=7.4',
    auth: false,
    status: 401,
    match: /Bearer/,
  },
  { name: 'no api-version', method: 'GET', path: '/keys/c-oct', status: 400, match: /api-version/ },
  { name: 'unknown key', method: 'GET', path: '/keys/nope?api-version=7.4', status: 404, match: /not found/ },
  {
    name: 'exportable without a release policy',
    method: 'POST',
    path: '/keys/x/create?api-version=7.4',
    body: () => ({ kty: 'oct-HSM', attributes: { exportable: true } }),
    status: 400,
    match: /must have release policy/,
  },
  {
    name: 'release policy on a non-exportable key',
    method: 'POST',
    path: '/keys/x/create?api-version=7.4',
    body: () => ({ kty: 'oct-HSM', release_policy: hostPolicy() }),
    status: 400,
    match: /must not have release policy/,
  },
  {
    name: 'malformed release policy',
    method: 'POST',
    path: '/keys/x/create?api-version=7.4',
    body: () => ({
      kty: 'oct-HSM',
      attributes: { exportable: true },
      release_policy: { data: Buffer.from('{"version":"2.0"}').toString('base64url') },
    }),
    status: 400,
    match: /version/,
  },
  {
    name: 'oct key size',
    method: 'POST',
    path: '/keys/x/create?api-version=7.4',
    body: () => ({ kty: 'oct-HSM', key_size: 512 }),
    status: 400,
    match: /128, 192 or 256/,
  },
  {
    name: 'EC keys',
    method: 'POST',
    path: '/keys/x/create?api-version=7.4',
    body: () => ({ kty: 'EC-HSM' }),
    status: 400,
    match: /unsupported kty/,
  },
  {
    name: 'RSA import without private members',
    method: 'PUT',
    path: '/keys/x?api-version=7.4',
    body: () => ({ key: { kty: 'RSA', n: 'AQAB', e: 'AQAB' } }),
    status: 400,
    match: /private members/,
  },
  {
    name: 'bad key name',
    method: 'GET',
    path: '/keys/bad_name?api-version=7.4',
    status: 400,
    match: /invalid name/,
  },
  {
    name: 'release without target',
    method: 'POST',
    path: '/keys/c-oct/release?api-version=7.4',
    body: () => ({}),
    status: 400,
    match: /target/,
  },
  {
    name: 'release with unknown enc',
    method: 'POST',
    path: '/keys/c-oct/release?api-version=7.4',
    body: () => ({ target: 'x', enc: 'A256KW' }),
    status: 400,
    match: /unsupported enc/,
  },
  {
    name: 'release with a non-JWT target',
    method: 'POST',
    path: '/keys/c-oct/release?api-version=7.4',
    body: () => ({ target: 'x' }),
    status: 400,
    match: /not a JWT/,
  },
];
for (const c of kvRefusals)
  test(`Key Vault refuses: ${c.name}`, async () => {
    const res = await call(emu.kvUrl, c.method, c.path, c.body?.(), c.auth ?? true);
    assert.equal(res.status, c.status);
    assert.match((res.body.error as { message: string }).message, c.match);
    if (c.status === 401) assert.match(String(res.headers['www-authenticate']), /^Bearer authorization=/);
  });

const releaseRefusals: Array<{
  name: string;
  target: () => Promise<string>;
  setup?: () => Promise<string>;
  status: number;
  match: RegExp;
}> = [
  {
    name: 'expired attestation token',
    target: () => token({}, { exp: Math.floor(Date.now() / 1000) - 3600 }),
    status: 400,
    match: /expired/,
  },
  {
    name: 'token signed by another key',
    target: () => token({}, { key: generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey }),
    status: 400,
    match: /signature/,
  },
  {
    name: 'token from an untrusted issuer',
    target: () => token({}, { iss: 'https://attacker.example' }),
    status: 400,
    match: /not an attestation service this emulator trusts/,
  },
  {
    name: 'token without x-ms-runtime keys',
    target: () => token({ 'x-ms-runtime': {} }),
    status: 400,
    match: /x-ms-runtime/,
  },
  {
    name: 'a debuggable guest under a non-debug policy',
    setup: async () => {
      await call(emu.kvUrl, 'PUT', '/keys/nodebug?api-version=7.4', {
        key: { kty: 'oct-HSM', k: randomBytes(32).toString('base64url') },
        attributes: { exportable: true },
        release_policy: policy([
          { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' },
          { claim: 'x-ms-sevsnpvm-hostdata', equals: hostData },
        ]),
      });
      return 'nodebug';
    },
    target: () => token({ 'x-ms-sevsnpvm-is-debuggable': true }),
    status: 403,
    match: /^release policy not satisfied: claim x-ms-sevsnpvm-is-debuggable \(/,
  },
  {
    name: 'a policy naming another authority',
    setup: async () => {
      await call(emu.kvUrl, 'PUT', '/keys/otherauth?api-version=7.4', {
        key: { kty: 'oct-HSM', k: randomBytes(32).toString('base64url') },
        attributes: { exportable: true },
        release_policy: policy(
          [{ claim: 'x-ms-sevsnpvm-hostdata', equals: hostData }],
          'https://sharedeus.eus.attest.azure.net',
        ),
      });
      return 'otherauth';
    },
    target: () => token({}),
    status: 403,
    match: /release policy not satisfied/,
  },
  {
    name: 'a non-exportable key',
    setup: async () => {
      await call(emu.kvUrl, 'POST', '/keys/plain/create?api-version=7.4', { kty: 'oct-HSM' });
      return 'plain';
    },
    target: () => token({}),
    status: 403,
    match: /not exportable/,
  },
];
for (const c of releaseRefusals)
  test(`Key Vault release refuses: ${c.name}`, async () => {
    const name = c.setup ? await c.setup() : 'c-oct';
    const res = await call(emu.kvUrl, 'POST', `/keys/${name}/release?api-version=7.4`, {
      target: await c.target(),
    });
    assert.equal(res.status, c.status, JSON.stringify(res.body));
    assert.match((res.body.error as { message: string }).message, c.match);
  });

test('Key Vault release: versioned kid, nonce echoed and checked, RSA-HSM 2048 released as PKCS#8', async () => {
  const got = await call(emu.kvUrl, 'GET', '/keys/c-rsa?api-version=7.4');
  const kid = (got.body.key as { kid: string }).kid;
  const released = await releaseKey({
    kid,
    maaToken: await token({}),
    runtime,
    credential: staticToken(emu.accessToken),
    nonce: 'n-123',
    enc: 'RSA_AES_KEY_WRAP_384',
    ca: emu.caPem,
    trustAnchors: [emu.caPem],
  });
  assert.equal(released.kty, 'RSA-HSM');
  assert.equal(released.key[0], 0x30); // DER SEQUENCE
  // The raw release answer: a JWS whose payload echoes the request.
  const raw = await call(emu.kvUrl, 'POST', `/keys/c-rsa/release?api-version=7.4`, {
    target: await token({}),
    nonce: 'n-9',
  });
  const payload = JSON.parse(
    Buffer.from((raw.body.value as string).split('.')[1]!, 'base64url').toString(),
  ) as {
    request: Record<string, unknown>;
    response: { key: { key: Record<string, unknown>; release_policy: unknown } };
  };
  assert.deepEqual(payload.request, {
    'api-version': '7.4',
    enc: 'CKM_RSA_AES_KEY_WRAP',
    kid: `${emu.kvUrl}/keys/c-rsa`,
    nonce: 'n-9',
  });
  assert.equal(payload.response.key.key.kid, kid);
  assert.ok(
    typeof payload.response.key.key.key_hsm === 'string' && typeof payload.response.key.key.n === 'string',
  );
  const header = decodeProtectedHeader(raw.body.value as string);
  assert.equal(header.alg, 'RS256');
  assert.equal((header.x5c as string[]).length, 2);
  assert.ok(typeof header['x5t#S256'] === 'string');
});

test('a release of an unknown key version is a clear 404', async () => {
  await assert.rejects(
    releaseKey({
      kid: `${emu.kvUrl}/keys/c-oct/00000000000000000000000000000000`,
      maaToken: await token({}),
      runtime,
      credential: staticToken(emu.accessToken),
      ca: emu.caPem,
    }),
    (e: unknown) => isMembraneError(e, 'AKV_NOT_FOUND'),
  );
});
