/**
 * Secure key release end to end, with no cloud: emulators up -> virtual evidence ->
 * MAA token -> release of an oct-HSM DEK and an RSA KEK -> unwrap of a wrapped-DEK
 * secret. A token whose host_data does not satisfy the policy is refused naming the
 * claim. The same release once more through the CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  constants,
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  publicEncrypt,
  randomBytes,
} from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { calculateJwkThumbprint } from 'jose';
import { isMembraneError } from '../../policy/errors.js';
import { dekKeyring, openBuffer } from '../../proxies/core/index.js';
import { getSecret, releaseKey, staticToken, unwrapDekWithKek } from '../../skr-client/akv/index.js';
import { type RunningEmulators, startEmulators } from '../../skr-client/emulators/index.js';
import { selectProvider } from '../../skr-client/evidence/index.js';
import { http } from '../../skr-client/http.js';
import { attestSevSnp, createRuntimeKey } from '../../skr-client/maa/client.js';

const run = promisify(execFile);
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

const virtualPolicy = Buffer.from('package policy\n\napi_version := "0.10.0"\n# membrane integration test\n');
const hostData = createHash('sha256').update(virtualPolicy).digest('hex');

let emu: RunningEmulators;
let dir: string;
const logs: string[] = [];
const dek = randomBytes(32);
const kek = generateKeyPairSync('rsa', { modulusLength: 2048 });

async function kv(method: 'PUT' | 'POST' | 'GET', path: string, body?: unknown) {
  return http('test key vault', `${emu.kvUrl}${path}?api-version=7.4`, {
    method,
    headers: { authorization: `Bearer ${emu.accessToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    ca: emu.caPem,
    retries: 0,
  });
}

function releasePolicy() {
  const policy = {
    version: '1.0.0',
    anyOf: [
      {
        authority: emu.maaUrl,
        allOf: [
          { claim: 'x-ms-sevsnpvm-hostdata', equals: hostData },
          { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
        ],
      },
    ],
  };
  return {
    contentType: 'application/json; charset=utf-8',
    data: Buffer.from(JSON.stringify(policy)).toString('base64url'),
  };
}

/** Virtual evidence for `policy`, attested by the MAA emulator. */
async function attest(policy: Buffer) {
  const runtime = await createRuntimeKey();
  const provider = await selectProvider({ provider: 'virtual', virtualPolicy: policy, warn: () => {} });
  const evidence = await provider.getEvidence(runtime.reportData);
  const { token, claims } = await attestSevSnp({ endpoint: emu.maaUrl, evidence, runtime, ca: emu.caPem });
  return { runtime, token, claims };
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-skr-'));
  emu = await startEmulators({ dir: join(dir, 'emu'), log: (l) => logs.push(l) });
  await kv('PUT', '/keys/dataset-dek', {
    key: { kty: 'oct-HSM', k: dek.toString('base64url'), key_ops: ['encrypt', 'decrypt'] },
    hsm: true,
    attributes: { exportable: true },
    release_policy: releasePolicy(),
  });
  await kv('PUT', '/keys/dataset-kek', {
    key: { ...kek.privateKey.export({ format: 'jwk' }), key_ops: ['wrapKey', 'unwrapKey'] },
    hsm: true,
    attributes: { exportable: true },
    release_policy: releasePolicy(),
  });
  const wrapped = publicEncrypt(
    { key: kek.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    dek,
  ).toString('base64');
  await kv('PUT', '/secrets/wrapped-dek', { value: wrapped });
});

after(async () => {
  await emu?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('both emulators announce they are not for production', () => {
  assert.ok(logs.some((l) => l.startsWith('MAA emulator — not for production')));
  assert.ok(logs.some((l) => l.startsWith('Key Vault emulator — not for production')));
});

test('state files are private: keys, state and token 0600, directory 0700', () => {
  const emuDir = join(dir, 'emu');
  assert.equal(statSync(emuDir).mode & 0o777, 0o700);
  for (const f of [
    'ca-key.pem',
    'issuing-ca-key.pem',
    'tls-key.pem',
    'release-signing-key.pem',
    'maa-signing-key.pem',
    'keyvault-state.json',
    'access-token',
  ])
    assert.equal(statSync(join(emuDir, f)).mode & 0o777, 0o600, f);
});

test('virtual evidence -> MAA token with the SEV-SNP claim set', async () => {
  const { claims, runtime } = await attest(virtualPolicy);
  assert.equal(claims['x-ms-attestation-type'], 'sevsnpvm');
  assert.equal(claims['x-ms-sevsnpvm-hostdata'], hostData);
  assert.equal(claims['x-ms-sevsnpvm-is-debuggable'], false);
  assert.equal(claims['x-ms-sevsnpvm-vmpl'], 0);
  assert.equal(claims.iss, emu.maaUrl);
  assert.deepEqual((claims['x-ms-runtime'] as { keys: unknown[] }).keys, [runtime.publicJwk]);
});

for (const enc of [
  undefined,
  'CKM_RSA_AES_KEY_WRAP',
  'RSA_AES_KEY_WRAP_256',
  'RSA_AES_KEY_WRAP_384',
] as const) {
  test(`release of the oct-HSM DEK returns the imported bytes (enc ${enc ?? 'default'})`, async () => {
    const { runtime, token } = await attest(virtualPolicy);
    const released = await releaseKey({
      kid: `${emu.kvUrl}/keys/dataset-dek`,
      maaToken: token,
      runtime,
      credential: staticToken(emu.accessToken),
      enc,
      ca: emu.caPem,
      trustAnchors: [emu.caPem],
    });
    assert.equal(released.kty, 'oct-HSM');
    assert.deepEqual(released.key, dek);
    assert.equal(
      released.thumbprint,
      await calculateJwkThumbprint({ kty: 'oct', k: dek.toString('base64url') }),
    );
  });
}

test("defect 12.9: the emulators' CA trusted for TLS (ca) is not a trust anchor for release signatures", async () => {
  const { runtime, token } = await attest(virtualPolicy);
  await assert.rejects(
    releaseKey({
      kid: `${emu.kvUrl}/keys/dataset-dek`,
      maaToken: token,
      runtime,
      credential: staticToken(emu.accessToken),
      ca: emu.caPem, // TLS to the emulator works; its JWS must chain to the (Azure) anchors
    }),
    (e: unknown) => isMembraneError(e, 'AKV_RELEASE_UNTRUSTED'),
  );
});

test('release of the RSA KEK, then unwrap of the wrapped-DEK secret with it', async () => {
  const { runtime, token } = await attest(virtualPolicy);
  const released = await releaseKey({
    kid: `${emu.kvUrl}/keys/dataset-kek`,
    maaToken: token,
    runtime,
    credential: staticToken(emu.accessToken),
    enc: 'RSA_AES_KEY_WRAP_256',
    ca: emu.caPem,
    trustAnchors: [emu.caPem],
  });
  assert.equal(released.kty, 'RSA-HSM');
  const releasedPub = createPublicKey(createPrivateKey({ key: released.key, format: 'der', type: 'pkcs8' }));
  assert.deepEqual(releasedPub.export({ format: 'jwk' }), kek.publicKey.export({ format: 'jwk' }));
  const { n, e } = kek.publicKey.export({ format: 'jwk' });
  assert.equal(released.thumbprint, await calculateJwkThumbprint({ kty: 'RSA', n: n!, e: e! }));

  const secret = await getSecret({
    vault: emu.kvUrl,
    name: 'wrapped-dek',
    credential: staticToken(emu.accessToken),
    ca: emu.caPem,
  });
  assert.deepEqual(unwrapDekWithKek(secret.value, released.key), dek);
});

test('end to end: the DEK released and unwrapped inside the clean room opens an object made by membrane protect', async () => {
  // Publisher side: protect a dataset with the DEK it keeps wrapped in the vault.
  const work = mkdtempSync(join(tmpdir(), 'membrane-skr-e2e-'));
  try {
    writeFileSync(join(work, 'dek.key'), dek, { mode: 0o600 });
    const plain = join(work, 'in');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(plain);
    const csv = Buffer.from('id,amount\n1,100\n2,250\n'.repeat(5000));
    writeFileSync(join(plain, 'ledger.csv'), csv);
    await run(process.execPath, [
      join(repoRoot, 'bin', 'membrane.mjs'),
      'protect',
      '--in',
      plain,
      '--out',
      join(work, 'store'),
      '--datasource',
      'ledger',
      '--dek',
      join(work, 'dek.key'),
    ]);
    // Clean-room side: attest, release the KEK, unwrap the wrapped-DEK secret, open the object.
    const { runtime, token } = await attest(virtualPolicy);
    const released = await releaseKey({
      kid: `${emu.kvUrl}/keys/dataset-kek`,
      maaToken: token,
      runtime,
      credential: staticToken(emu.accessToken),
      ca: emu.caPem,
      trustAnchors: [emu.caPem],
    });
    const secret = await getSecret({
      vault: emu.kvUrl,
      name: 'wrapped-dek',
      credential: staticToken(emu.accessToken),
      ca: emu.caPem,
    });
    const unwrapped = unwrapDekWithKek(secret.value, released.key);
    const object = readFileSync(join(work, 'store', 'ledger.csv'));
    const opened = await openBuffer(object, {
      keyring: dekKeyring(unwrapped),
      expect: { datasource: 'ledger', path: 'ledger.csv' },
    });
    assert.ok(opened.equals(csv));
    // The same object under another name is refused: the binding travels with the key release.
    await assert.rejects(
      openBuffer(object, {
        keyring: dekKeyring(unwrapped),
        expect: { datasource: 'ledger', path: 'other.csv' },
      }),
      { code: 'FORMAT_CONTEXT_MISMATCH' },
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});

test('a token whose host_data does not satisfy the policy is refused, naming the claim', async () => {
  const { runtime, token } = await attest(Buffer.from('some other container policy'));
  await assert.rejects(
    releaseKey({
      kid: `${emu.kvUrl}/keys/dataset-dek`,
      maaToken: token,
      runtime,
      credential: staticToken(emu.accessToken),
      ca: emu.caPem,
      trustAnchors: [emu.caPem],
    }),
    (e: unknown) =>
      isMembraneError(e, 'AKV_RELEASE_DENIED') &&
      e.message.includes('release policy not satisfied: claim x-ms-sevsnpvm-hostdata') &&
      !e.message.includes('claim x-ms-attestation-type'),
  );
});

test('a wrong access token is refused with an actionable 401', async () => {
  const { runtime, token } = await attest(virtualPolicy);
  await assert.rejects(
    releaseKey({
      kid: `${emu.kvUrl}/keys/dataset-dek`,
      maaToken: token,
      runtime,
      credential: staticToken('not-the-token'),
      ca: emu.caPem,
      trustAnchors: [emu.caPem],
    }),
    (e: unknown) => isMembraneError(e, 'AKV_UNAUTHORIZED') && /access token/.test(e.message),
  );
});

test('a key released to one runtime key cannot be opened with another', async () => {
  const a = await attest(virtualPolicy);
  const other = await createRuntimeKey();
  await assert.rejects(
    releaseKey({
      kid: `${emu.kvUrl}/keys/dataset-dek`,
      maaToken: a.token,
      runtime: other,
      credential: staticToken(emu.accessToken),
      ca: emu.caPem,
      trustAnchors: [emu.caPem],
    }),
    (e: unknown) => isMembraneError(e, 'AKV_RELEASE_UNWRAP'),
  );
});

test('the same release through the CLI writes the key 0600 and prints type and thumbprint', async () => {
  const policyFile = join(dir, 'policy.rego');
  const out = join(dir, 'dek.bin');
  writeFileSync(policyFile, virtualPolicy);
  const { stdout } = await run(
    process.execPath,
    [
      join(repoRoot, 'bin/membrane.mjs'),
      'skr',
      'release',
      '--kid',
      `${emu.kvUrl}/keys/dataset-dek`,
      '--maa',
      emu.maaUrl,
      '--provider',
      'virtual',
      '--virtual-policy',
      policyFile,
      '--access-token',
      emu.accessToken,
      '--ca',
      emu.caFile,
      '--release-ca',
      emu.caFile,
      '--out',
      out,
      '--json',
    ],
    { cwd: repoRoot },
  );
  const result = JSON.parse(stdout) as { kty: string; thumbprint: string; out: string };
  assert.equal(result.kty, 'oct-HSM');
  assert.equal(result.thumbprint, await calculateJwkThumbprint({ kty: 'oct', k: dek.toString('base64url') }));
  assert.deepEqual(readFileSync(out), dek);
  assert.equal(statSync(out).mode & 0o777, 0o600);
  assert.ok(!stdout.includes(dek.toString('base64url')) && !stdout.includes(dek.toString('hex')));
});

test('the CLI refusal names the failing claim and exits 1', async () => {
  const policyFile = join(dir, 'other.rego');
  writeFileSync(policyFile, 'not the agreed policy');
  await assert.rejects(
    run(
      process.execPath,
      [
        join(repoRoot, 'bin/membrane.mjs'),
        'skr',
        'release',
        '--kid',
        `${emu.kvUrl}/keys/dataset-dek`,
        '--maa',
        emu.maaUrl,
        '--provider',
        'virtual',
        '--virtual-policy',
        policyFile,
        '--access-token',
        emu.accessToken,
        '--ca',
        emu.caFile,
        '--release-ca',
        emu.caFile,
      ],
      { cwd: repoRoot },
    ),
    (e: { code?: number; stderr?: string }) =>
      e.code === 1 &&
      /release policy not satisfied: claim x-ms-sevsnpvm-hostdata/.test(e.stderr ?? '') &&
      /\[AKV_RELEASE_DENIED\]/.test(e.stderr ?? ''),
  );
});

test('emulator state survives a restart (same CA, token and keys; new ports)', async () => {
  const again = await startEmulators({ dir: join(dir, 'emu2'), log: () => {} });
  try {
    const put = await http('test key vault', `${again.kvUrl}/secrets/s1?api-version=7.4`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${again.accessToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: 'v1' }),
      ca: again.caPem,
      retries: 0,
    });
    assert.equal(put.status, 200);
  } finally {
    await again.close();
  }
  const third = await startEmulators({ dir: join(dir, 'emu2'), log: () => {} });
  try {
    assert.equal(third.caPem, again.caPem);
    assert.equal(third.accessToken, again.accessToken);
    const s = await getSecret({
      vault: third.kvUrl,
      name: 's1',
      credential: staticToken(third.accessToken),
      ca: third.caPem,
    });
    assert.equal(s.value, 'v1');
  } finally {
    await third.close();
  }
});
