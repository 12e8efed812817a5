/**
 * Key Vault client pieces in isolation: key_hsm sealing/opening, the release JWS
 * x5c verification, error mapping, kid parsing, wrapped-DEK decoding and the
 * token sources (against loopback stand-ins for IMDS and Entra ID).
 */
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, publicEncrypt, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CompactSign } from 'jose';
import { isMembraneError } from '../../policy/errors.js';
import {
  managedIdentity,
  openKeyHsm,
  parseKid,
  resourceForVault,
  sealKeyHsm,
  staticToken,
  unwrapDekWithKek,
  verifyX5cJws,
  workloadIdentity,
} from '../../skr-client/akv/index.js';
import { releaseError } from '../../skr-client/akv/release.js';
import { azureTrustAnchors } from '../../skr-client/akv/x5c.js';
import { type EmulatorCa, loadOrCreateCa } from '../../skr-client/emulators/ca.js';

const runtime = generateKeyPairSync('rsa', { modulusLength: 2048 });
const otherRuntime = generateKeyPairSync('rsa', { modulusLength: 2048 });
const is = (code: string) => (e: unknown) => isMembraneError(e, code);

// ------------------------------------------------------------------ key_hsm

const encs = ['CKM_RSA_AES_KEY_WRAP', 'RSA_AES_KEY_WRAP_256', 'RSA_AES_KEY_WRAP_384'] as const;
const materials = {
  'oct 256-bit': randomBytes(32),
  'RSA PKCS#8': generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    format: 'der',
    type: 'pkcs8',
  }),
};
for (const enc of encs)
  for (const [what, material] of Object.entries(materials))
    test(`key_hsm round trip: ${what}, ${enc}`, () => {
      const blob = sealKeyHsm({ material, wrappingKey: runtime.publicKey, enc, kid: 'rt' });
      const inner = JSON.parse(Buffer.from(blob, 'base64url').toString()) as Record<string, unknown>;
      assert.deepEqual(inner.header, { kid: 'rt', alg: 'dir', enc });
      assert.equal(inner.schema_version, '1.0.0');
      const opened = openKeyHsm(blob, runtime.privateKey, enc);
      assert.deepEqual(opened.material, material);
      assert.equal(opened.enc, enc);
    });

function mutateCiphertext(blob: string, f: (c: Buffer) => Buffer): string {
  const inner = JSON.parse(Buffer.from(blob, 'base64url').toString()) as { ciphertext: string };
  inner.ciphertext = f(Buffer.from(inner.ciphertext, 'base64url')).toString('base64url');
  return Buffer.from(JSON.stringify(inner)).toString('base64url');
}
const good = sealKeyHsm({
  material: randomBytes(32),
  wrappingKey: runtime.publicKey,
  enc: 'RSA_AES_KEY_WRAP_256',
  kid: '',
});
const keyHsmRefusals: Array<{
  name: string;
  blob: string;
  enc?: (typeof encs)[number];
  key?: typeof runtime.privateKey;
}> = [
  {
    name: 'flipped byte in the AES-wrapped part',
    blob: mutateCiphertext(good, (c) => flip(c, c.length - 3)),
  },
  { name: 'flipped byte in the RSA-OAEP part', blob: mutateCiphertext(good, (c) => flip(c, 10)) },
  { name: 'truncated ciphertext', blob: mutateCiphertext(good, (c) => c.subarray(0, 256 + 8)) },
  { name: 'wrapped to another runtime key', blob: good, key: otherRuntime.privateKey },
  { name: 'response enc disagrees with the blob header', blob: good, enc: 'RSA_AES_KEY_WRAP_384' },
  { name: 'not base64url JSON', blob: 'bm90IGpzb24' },
  {
    name: 'unknown enc in header',
    blob: Buffer.from(JSON.stringify({ header: { enc: 'A256KW', alg: 'dir' }, ciphertext: 'AA' })).toString(
      'base64url',
    ),
  },
];
for (const c of keyHsmRefusals)
  test(`key_hsm refused: ${c.name}`, () => {
    assert.throws(() => openKeyHsm(c.blob, c.key ?? runtime.privateKey, c.enc), is('AKV_RELEASE_UNWRAP'));
  });

// ------------------------------------------------------------------ x5c JWS

let dir: string;
let ca: EmulatorCa;
let foreign: EmulatorCa;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-akv-'));
  ca = await loadOrCreateCa(join(dir, 'a'));
  foreign = await loadOrCreateCa(join(dir, 'b'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const sign = (header: Record<string, unknown>, key = ca.releaseSigning.privateKey, payload = '{"ok":true}') =>
  new CompactSign(Buffer.from(payload)).setProtectedHeader(header as { alg: string }).sign(key);

test('release JWS: accepted when chained to an added anchor and issued for the host', async () => {
  const jws = await sign({ alg: 'RS256', x5c: ca.releaseSigning.x5c });
  for (const host of ['127.0.0.1', 'localhost']) {
    const { payload } = await verifyX5cJws(jws, { host, trustAnchors: [], ca: ca.caPem });
    assert.equal(Buffer.from(payload).toString(), '{"ok":true}');
  }
});

test('release JWS: PS384 is accepted too (alg per header)', async () => {
  const jws = await sign({ alg: 'PS384', x5c: ca.releaseSigning.x5c });
  await verifyX5cJws(jws, { host: '127.0.0.1', trustAnchors: [], ca: ca.caPem });
});

const jwsRefusals: Array<{
  name: string;
  make: () => Promise<string>;
  host?: string;
  anchors?: () => string[];
  now?: Date;
  match: RegExp;
}> = [
  {
    name: 'leaf not issued for the vault host',
    make: () => sign({ alg: 'RS256', x5c: ca.releaseSigning.x5c }),
    host: 'myvault.vault.azure.net',
    match: /not issued for myvault/,
  },
  {
    name: 'chain from an untrusted CA',
    make: () => sign({ alg: 'RS256', x5c: foreign.releaseSigning.x5c }, foreign.releaseSigning.privateKey),
    match: /trusted root/,
  },
  {
    name: 'default Azure anchors do not trust the emulator CA',
    make: () => sign({ alg: 'RS256', x5c: ca.releaseSigning.x5c }),
    anchors: () => azureTrustAnchors(),
    match: /trusted root/,
  },
  {
    name: 'signed by a key other than the leaf',
    make: () => sign({ alg: 'RS256', x5c: ca.releaseSigning.x5c }, ca.maaSigning.privateKey),
    match: /signature does not verify/,
  },
  {
    name: 'leaf without its issuing CA',
    make: () => sign({ alg: 'RS256', x5c: ca.releaseSigning.x5c.slice(0, 1) }),
    match: /trusted root/,
  },
  {
    name: 'chain in the wrong order',
    make: () => sign({ alg: 'RS256', x5c: [...ca.releaseSigning.x5c].reverse() }),
    match: /not a CA certificate|not signed by|not issued for/,
  },
  {
    name: 'a leaf posing as intermediate',
    make: () => sign({ alg: 'RS256', x5c: [ca.releaseSigning.x5c[0]!, ca.tls.x5c[0]!] }),
    match: /not a CA certificate/,
  },
  { name: 'no x5c header', make: () => sign({ alg: 'RS256' }), match: /no x5c/ },
  {
    name: 'symmetric alg',
    make: () =>
      new CompactSign(Buffer.from('{}'))
        .setProtectedHeader({ alg: 'HS256', x5c: ca.releaseSigning.x5c } as { alg: string })
        .sign(randomBytes(32)),
    match: /not allowed/,
  },
  {
    name: 'expired certificates',
    make: () => sign({ alg: 'RS256', x5c: ca.releaseSigning.x5c }),
    now: new Date(Date.now() + 4 * 365 * 86_400_000),
    match: /validity period/,
  },
  {
    name: 'tampered payload',
    make: async () => {
      const [h, , s] = (await sign({ alg: 'RS256', x5c: ca.releaseSigning.x5c })).split('.');
      return `${h}.${Buffer.from('{"ok":false}').toString('base64url')}.${s}`;
    },
    match: /signature does not verify/,
  },
  { name: 'not a JWS', make: async () => 'abc', match: /not a compact JWS/ },
];
for (const c of jwsRefusals)
  test(`release JWS refused: ${c.name}`, async () => {
    const jws = await c.make();
    await assert.rejects(
      verifyX5cJws(jws, {
        host: c.host ?? '127.0.0.1',
        trustAnchors: c.anchors ? c.anchors() : [],
        ca: c.anchors ? undefined : ca.caPem,
        now: c.now,
      }),
      (e: unknown) => isMembraneError(e, 'AKV_RELEASE_UNTRUSTED') && c.match.test(e.message),
    );
  });

test('default trust anchors are the Azure roots (DigiCert Global Root G2 among them)', () => {
  const anchors = azureTrustAnchors();
  assert.ok(anchors.length >= 3);
});

// ------------------------------------------------------------------ error mapping

const body = (code: string, message: string) => Buffer.from(JSON.stringify({ error: { code, message } }));
const errorCases: Array<{ status: number; body: Buffer; code: string; has: RegExp[] }> = [
  {
    status: 403,
    body: body(
      'Forbidden',
      'release policy not satisfied: claim x-ms-sevsnpvm-hostdata (x-ms-sevsnpvm-hostdata equals "a")',
    ),
    code: 'AKV_RELEASE_DENIED',
    has: [/release policy not satisfied: claim x-ms-sevsnpvm-hostdata —/],
  },
  {
    status: 403,
    body: body(
      'AccessDenied',
      'Target environment attestation does not satisfy claim x-ms-sevsnpvm-is-debuggable and x-ms-attestation-type',
    ),
    code: 'AKV_RELEASE_DENIED',
    has: [/claim x-ms-sevsnpvm-is-debuggable, claim x-ms-attestation-type/],
  },
  {
    status: 403,
    body: body('Forbidden', 'The key release policy evaluation failed'),
    code: 'AKV_RELEASE_DENIED',
    has: [/release policy not satisfied —/],
  },
  {
    status: 403,
    body: body('Forbidden', 'Caller is not authorized to perform action on resource'),
    code: 'AKV_FORBIDDEN',
    has: [/keys\/release permission/, /Crypto Service Release User/],
  },
  {
    status: 401,
    body: body('Unauthorized', 'AKV10022: Invalid audience'),
    code: 'AKV_UNAUTHORIZED',
    has: [/https:\/\/vault\.azure\.net/, /Invalid audience/],
  },
  { status: 404, body: body('KeyNotFound', 'no key'), code: 'AKV_NOT_FOUND', has: [/key name and version/] },
  {
    status: 400,
    body: body('BadParameter', 'AKV.SKR.1010: token expired'),
    code: 'AKV_BAD_REQUEST',
    has: [/exportable/, /token expired/],
  },
  { status: 400, body: Buffer.from('<html>oops</html>'), code: 'AKV_BAD_REQUEST', has: [/oops/] },
];
for (const c of errorCases)
  test(`release error HTTP ${c.status} -> ${c.code}: ${c.body.toString().slice(0, 50)}`, () => {
    const e = releaseError(c.status, c.body, 'https://v.vault.azure.net/keys/k');
    assert.equal(e.code, c.code);
    for (const r of c.has) assert.match(e.message, r);
  });

test('a Managed HSM host gets the managedhsm token audience', () => {
  assert.equal(resourceForVault('https://x.managedhsm.azure.net/keys/k'), 'https://managedhsm.azure.net');
  assert.equal(resourceForVault('https://x.vault.azure.net'), 'https://vault.azure.net');
  assert.equal(
    releaseError(401, Buffer.from(''), 'https://x.managedhsm.azure.net/keys/k').message.includes(
      'managedhsm.azure.net',
    ),
    true,
  );
});

// ------------------------------------------------------------------ kid parsing

const kids: Array<[string, { vault: string; name: string; version?: string } | null]> = [
  ['https://v.vault.azure.net/keys/dek', { vault: 'https://v.vault.azure.net', name: 'dek' }],
  ['https://v.vault.azure.net/keys/dek/', { vault: 'https://v.vault.azure.net', name: 'dek' }],
  [
    'https://h.managedhsm.azure.net/keys/kek-1/0123abcd',
    { vault: 'https://h.managedhsm.azure.net', name: 'kek-1', version: '0123abcd' },
  ],
  ['https://127.0.0.1:4000/keys/k/v1', { vault: 'https://127.0.0.1:4000', name: 'k', version: 'v1' }],
  ['https://v.vault.azure.net/secrets/dek', null],
  ['https://v.vault.azure.net/keys/dek/v1/release', null],
  ['https://v.vault.azure.net/keys/bad_name', null],
  ['ftp://v.vault.azure.net/keys/dek', null],
  ['not a url', null],
];
for (const [kid, want] of kids)
  test(`parseKid ${kid}`, () => {
    if (want === null) assert.throws(() => parseKid(kid), is('AKV_URL_INVALID'));
    else {
      const got = parseKid(kid);
      assert.deepEqual(
        { vault: got.vault, name: got.name, version: got.version },
        { version: undefined, ...want },
      );
    }
  });

// ------------------------------------------------------------------ wrapped DEK

const kek = generateKeyPairSync('rsa', { modulusLength: 2048 });
const kekPkcs8 = kek.privateKey.export({ format: 'der', type: 'pkcs8' });
const dek = randomBytes(32);
const wrapped = publicEncrypt(
  { key: kek.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
  dek,
);
for (const [form, text] of [
  ['base64 (azure-cleanroom)', wrapped.toString('base64')],
  ['base64 with surrounding whitespace', `\n${wrapped.toString('base64')}\n`],
  ['base64url', wrapped.toString('base64url')],
  ['hex', wrapped.toString('hex')],
] as const)
  test(`unwrapDekWithKek accepts ${form}`, () => {
    assert.deepEqual(unwrapDekWithKek(text, kekPkcs8), dek);
  });

test('unwrapDekWithKek refuses: wrong KEK, SHA-1 OAEP, wrong length, not a key', () => {
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    format: 'der',
    type: 'pkcs8',
  });
  assert.throws(() => unwrapDekWithKek(wrapped.toString('base64'), other), is('DEK_UNWRAP_FAILED'));
  const sha1 = publicEncrypt(
    { key: kek.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha1' },
    dek,
  );
  assert.throws(() => unwrapDekWithKek(sha1.toString('base64'), kekPkcs8), is('DEK_UNWRAP_FAILED'));
  assert.throws(
    () => unwrapDekWithKek(wrapped.subarray(1).toString('base64'), kekPkcs8),
    (e: unknown) => isMembraneError(e, 'DEK_UNWRAP_FAILED') && /256-byte/.test(e.message),
  );
  assert.throws(
    () => unwrapDekWithKek(wrapped.toString('base64'), Buffer.from('nope')),
    is('DEK_UNWRAP_FAILED'),
  );
});

// ------------------------------------------------------------------ token sources

interface Seen {
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}
async function stub(
  answer: (s: Seen) => { status: number; body: unknown },
): Promise<{ url: string; seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const s = { url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      seen.push(s);
      const a = answer(s);
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(a.body));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    seen,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

test('static token: trimmed, "Bearer " prefix dropped, empty refused', async () => {
  assert.equal(await staticToken('  Bearer abc \n').getToken('https://vault.azure.net'), 'abc');
  assert.throws(() => staticToken('  '), is('AKV_TOKEN_MISSING'));
});

test('managed identity: IMDS query, Metadata header, client_id, cached until near expiry', async () => {
  const s = await stub(() => ({
    status: 200,
    body: { access_token: 'tok-1', expires_on: String(Math.floor(Date.now() / 1000) + 3600) },
  }));
  try {
    const src = managedIdentity({ clientId: 'cid-1', endpoint: `${s.url}/metadata/identity/oauth2/token` });
    assert.equal(await src.getToken('https://vault.azure.net'), 'tok-1');
    assert.equal(await src.getToken('https://vault.azure.net'), 'tok-1');
    assert.equal(s.seen.length, 1);
    const u = new URL(s.seen[0]!.url, 'http://x');
    assert.equal(u.pathname, '/metadata/identity/oauth2/token');
    assert.equal(u.searchParams.get('api-version'), '2018-02-01');
    assert.equal(u.searchParams.get('resource'), 'https://vault.azure.net');
    assert.equal(u.searchParams.get('client_id'), 'cid-1');
    assert.equal(s.seen[0]!.headers.metadata, 'true');
    await src.getToken('https://managedhsm.azure.net');
    assert.equal(s.seen.length, 2);
  } finally {
    await s.close();
  }
});

test('managed identity: an expiring token is fetched again', async () => {
  let n = 0;
  const s = await stub(() => ({ status: 200, body: { access_token: `tok-${++n}`, expires_in: '60' } }));
  try {
    const src = managedIdentity({ endpoint: s.url });
    assert.equal(await src.getToken('r'), 'tok-1');
    assert.equal(await src.getToken('r'), 'tok-2');
    assert.equal(new URL(s.seen[0]!.url, 'http://x').searchParams.has('client_id'), false);
  } finally {
    await s.close();
  }
});

test('managed identity: "identity not found" becomes an actionable error', async () => {
  const s = await stub(() => ({
    status: 400,
    body: { error: 'invalid_request', error_description: 'Identity not found' },
  }));
  try {
    await assert.rejects(
      managedIdentity({ endpoint: s.url, clientId: 'cid-x' }).getToken('https://vault.azure.net'),
      (e: unknown) =>
        isMembraneError(e, 'AKV_TOKEN_FAILED') &&
        /Identity not found/.test(e.message) &&
        /cid-x/.test(e.message),
    );
  } finally {
    await s.close();
  }
});

test('workload identity: client-assertion flow with the federated token re-read each time', async () => {
  const s = await stub(() => ({ status: 200, body: { access_token: 'aad-tok', expires_in: 30 } }));
  const tokenFile = join(dir, 'federated-token');
  try {
    writeFileSync(tokenFile, 'sa-token-1\n');
    const src = workloadIdentity({
      env: {
        AZURE_CLIENT_ID: 'app-1',
        AZURE_TENANT_ID: 'tenant-1',
        AZURE_FEDERATED_TOKEN_FILE: tokenFile,
        AZURE_AUTHORITY_HOST: `${s.url}/`,
      },
    });
    assert.equal(await src.getToken('https://vault.azure.net'), 'aad-tok');
    writeFileSync(tokenFile, 'sa-token-2');
    await src.getToken('https://vault.azure.net'); // expires_in 30 s < margin: fetched again
    assert.equal(s.seen.length, 2);
    const [a, b] = s.seen.map((x) => new URLSearchParams(x.body));
    assert.equal(s.seen[0]!.url, '/tenant-1/oauth2/v2.0/token');
    assert.equal(s.seen[0]!.headers['content-type'], 'application/x-www-form-urlencoded');
    assert.equal(a!.get('grant_type'), 'client_credentials');
    assert.equal(a!.get('client_id'), 'app-1');
    assert.equal(a!.get('scope'), 'https://vault.azure.net/.default');
    assert.equal(a!.get('client_assertion_type'), 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer');
    assert.equal(a!.get('client_assertion'), 'sa-token-1');
    assert.equal(b!.get('client_assertion'), 'sa-token-2');
  } finally {
    await s.close();
  }
});

test('workload identity: missing configuration and AADSTS errors are actionable', async () => {
  assert.throws(
    () => workloadIdentity({ env: { AZURE_CLIENT_ID: 'a' } }),
    (e: unknown) =>
      isMembraneError(e, 'AKV_TOKEN_CONFIG') && /AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE/.test(e.message),
  );
  const s = await stub(() => ({
    status: 400,
    body: {
      error: 'invalid_client',
      error_description: 'AADSTS70021: No matching federated identity record found.\r\nTrace ID: x',
    },
  }));
  const tokenFile = join(dir, 'federated-token-2');
  writeFileSync(tokenFile, 'sa-secret-assertion');
  try {
    const src = workloadIdentity({
      env: {
        AZURE_CLIENT_ID: 'app-1',
        AZURE_TENANT_ID: 't',
        AZURE_FEDERATED_TOKEN_FILE: tokenFile,
        AZURE_AUTHORITY_HOST: s.url,
      },
    });
    await assert.rejects(
      src.getToken('https://vault.azure.net'),
      (e: unknown) =>
        isMembraneError(e, 'AKV_TOKEN_FAILED') &&
        /AADSTS70021/.test(e.message) &&
        !/Trace ID/.test(e.message) &&
        !e.message.includes('sa-secret-assertion'),
    );
    const missing = workloadIdentity({
      env: { AZURE_CLIENT_ID: 'a', AZURE_TENANT_ID: 't', AZURE_FEDERATED_TOKEN_FILE: join(dir, 'absent') },
    });
    await assert.rejects(missing.getToken('r'), is('AKV_TOKEN_CONFIG'));
  } finally {
    await s.close();
  }
});

function flip(b: Buffer, i: number): Buffer {
  const out = Buffer.from(b);
  out[i] = out[i]! ^ 0x01;
  return out;
}
