/**
 * Membrane's Raw AES keyring against the SDK's RawAesKeyringNode as the oracle: same wire
 * format both ways, tampering refused, and a key that destroy() really wipes (defect 12.2).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  AlgorithmSuiteIdentifier,
  EncryptedDataKey,
  NodeAlgorithmSuite,
  NodeDecryptionMaterial,
  NodeEncryptionMaterial,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import { isMembraneError } from '../../../policy/errors.js';
import { parseSpec } from '../../../policy/spec.js';
import {
  DEK_NAMESPACE,
  dekKeyId,
  dekKeyring,
  KeyringErrorCode,
  openBuffer,
  sealBuffer,
  ZeroableAesKeyring,
} from '../../../proxies/core/index.js';
import { acquireKeys } from '../../../runtime/keys.js';
import { createProxyContext } from '../../../runtime/proxy-context.js';
import { noopMeter } from '../../../runtime/telemetry.js';
import { sdk } from '../../helpers/core.js';

const suite = new NodeAlgorithmSuite(
  AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
);
const dir = mkdtempSync(join(tmpdir(), 'membrane-keyring-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The SDK's keyring over the same key and names: the oracle. `utf8Sorting` as the spec (and every other ESDK) sorts. */
function oracle(dek: Buffer, legacySorting = false): RawAesKeyringNode {
  return new RawAesKeyringNode({
    keyNamespace: DEK_NAMESPACE,
    keyName: dekKeyId(dek),
    unencryptedMasterKey: Uint8Array.from(dek),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    utf8Sorting: !legacySorting,
  });
}

function keyBytes(m: NodeEncryptionMaterial | NodeDecryptionMaterial): Buffer {
  const k = m.getUnencryptedDataKey();
  return k instanceof Uint8Array ? Buffer.from(k) : Buffer.from(k.export());
}

async function wrap(
  keyring: ZeroableAesKeyring | RawAesKeyringNode,
  ctx: Record<string, string>,
): Promise<{ dataKey: Buffer; edks: EncryptedDataKey[] }> {
  const m = await keyring.onEncrypt(new NodeEncryptionMaterial(suite, ctx));
  return { dataKey: keyBytes(m), edks: m.encryptedDataKeys };
}

async function unwrap(
  keyring: ZeroableAesKeyring | RawAesKeyringNode,
  ctx: Record<string, string>,
  edks: EncryptedDataKey[],
): Promise<Buffer | undefined> {
  const m = await keyring.onDecrypt(new NodeDecryptionMaterial(suite, ctx), edks);
  return m.hasUnencryptedDataKey ? keyBytes(m) : undefined;
}

const destroyedError = (e: unknown) => isMembraneError(e, KeyringErrorCode.DESTROYED);

// Contexts the two sort orders agree on, and ones they do not ('Z' < 'm' in bytes, not in
// localeCompare; 'é' > 'f' in bytes, not in localeCompare).
const contexts: { name: string; ctx: Record<string, string>; ordersDiffer?: true }[] = [
  { name: 'an empty context', ctx: {} },
  { name: 'an object binding', ctx: { 'membrane:datasource': 'sales', 'membrane:path': 'q1/orders.csv' } },
  {
    name: 'a request binding with many entries',
    ctx: {
      'membrane:path': '/v1/x',
      'membrane:datasource': 'api',
      'membrane:method': 'POST',
      'membrane:host': 'api.test',
      'membrane:direction': 'request',
    },
  },
  { name: 'non-ASCII values and an empty value', ctx: { 'membrane:path': 'données/été.csv', note: '' } },
  {
    name: 'keys whose byte order is not their locale order',
    ctx: { Zone: 'eu', 'membrane:path': 'a' },
    ordersDiffer: true,
  },
  { name: 'a non-ASCII key', ctx: { été: '1', fin: '2' }, ordersDiffer: true },
];

for (const { name, ctx, ordersDiffer } of contexts) {
  test(`with ${name}, the SDK keyring opens what ours wraps and ours opens what it wraps`, async () => {
    const dek = randomBytes(32);
    const ours = dekKeyring(dek);
    const sdkKeyring = oracle(dek);
    const a = await wrap(ours, ctx);
    assert.deepEqual(await unwrap(sdkKeyring, ctx, a.edks), a.dataKey, 'ours → SDK');
    const b = await wrap(sdkKeyring, ctx);
    assert.deepEqual(await unwrap(ours, ctx, b.edks), b.dataKey, 'SDK → ours');
    // The JavaScript SDK's default (legacy) keyring: ours still opens what it wrapped, and it
    // opens ours whenever the two sort orders agree.
    const legacy = oracle(dek, true);
    const c = await wrap(legacy, ctx);
    assert.deepEqual(await unwrap(ours, ctx, c.edks), c.dataKey, 'legacy SDK → ours');
    if (!ordersDiffer) assert.deepEqual(await unwrap(legacy, ctx, a.edks), a.dataKey, 'ours → legacy SDK');
  });
}

test('an EDK has the Raw AES layout: namespace, key name | 128 | 12 | IV, then 32 + 16 bytes', async () => {
  const dek = randomBytes(32);
  const { edks } = await wrap(dekKeyring(dek), { 'membrane:path': 'x' });
  assert.equal(edks.length, 1);
  const edk = edks[0]!;
  const name = Buffer.from(dekKeyId(dek));
  const info = Buffer.from(edk.rawInfo!);
  assert.equal(edk.providerId, DEK_NAMESPACE);
  assert.equal(info.length, name.length + 4 + 4 + 12);
  assert.ok(info.subarray(0, name.length).equals(name));
  assert.equal(info.readUInt32BE(name.length), 128);
  assert.equal(info.readUInt32BE(name.length + 4), 12);
  assert.equal(edk.encryptedDataKey.length, 48);
});

test('whole messages interoperate with the SDK client, both ways, in its default (signing) suite too', async () => {
  const dek = randomBytes(32);
  const ours = dekKeyring(dek);
  const pt = randomBytes(5000);
  const encryptionContext = { 'membrane:path': 'm.bin', purpose: 'interop' };
  for (const suiteId of [
    undefined,
    AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
  ]) {
    const mine = await sdk.encrypt(ours, pt, { encryptionContext, ...(suiteId ? { suiteId } : {}) });
    assert.ok(Buffer.from((await sdk.decrypt(oracle(dek), mine.result)).plaintext).equals(pt));
    const theirs = await sdk.encrypt(oracle(dek), pt, { encryptionContext, ...(suiteId ? { suiteId } : {}) });
    assert.ok(Buffer.from((await sdk.decrypt(ours, theirs.result)).plaintext).equals(pt));
  }
});

/** One EDK with one part changed. */
function tampered(edk: EncryptedDataKey, change: { providerId?: string; info?: Buffer; blob?: Buffer }) {
  const info = change.info ?? Buffer.from(edk.rawInfo!);
  return new EncryptedDataKey({
    providerId: change.providerId ?? edk.providerId,
    providerInfo: info.toString('utf8'),
    rawInfo: info,
    encryptedDataKey: change.blob ?? Buffer.from(edk.encryptedDataKey),
  });
}

function flip(b: Uint8Array, at: number): Buffer {
  const out = Buffer.from(b);
  out[at < 0 ? out.length + at : at]! ^= 0x01;
  return out;
}

test('a tampered EDK or encryption context is refused, whichever keyring wrapped it', async () => {
  const dek = randomBytes(32);
  const ctx = { 'membrane:datasource': 'sales', 'membrane:path': 'q1.csv' };
  const nameLen = Buffer.byteLength(dekKeyId(dek));
  for (const [who, wrapper] of [
    ['ours', dekKeyring(dek)],
    ['the SDK', oracle(dek)],
  ] as const) {
    const { edks } = await wrap(wrapper, ctx);
    const edk = edks[0]!;
    const info = Buffer.from(edk.rawInfo!);
    const cases: { why: string; edk: EncryptedDataKey; ctx?: Record<string, string> }[] = [
      {
        why: 'a flipped bit in the wrapped key',
        edk: tampered(edk, { blob: flip(edk.encryptedDataKey, 0) }),
      },
      { why: 'a flipped bit in the tag', edk: tampered(edk, { blob: flip(edk.encryptedDataKey, -1) }) },
      { why: 'a flipped bit in the IV', edk: tampered(edk, { info: flip(info, -1) }) },
      {
        why: 'a truncated wrapped key',
        edk: tampered(edk, { blob: Buffer.from(edk.encryptedDataKey).subarray(1) }),
      },
      { why: 'another key name', edk: tampered(edk, { info: flip(info, 0) }) },
      { why: 'another provider ID', edk: tampered(edk, { providerId: 'membrane/other' }) },
      {
        why: 'a tag length of 96 bits',
        edk: tampered(edk, {
          info: Buffer.concat([
            info.subarray(0, nameLen),
            Buffer.from([0, 0, 0, 96]),
            info.subarray(nameLen + 4),
          ]),
        }),
      },
      { why: 'a changed context value', edk, ctx: { ...ctx, 'membrane:path': 'q2.csv' } },
      { why: 'an added context entry', edk, ctx: { ...ctx, extra: '1' } },
      { why: 'a removed context entry', edk, ctx: { 'membrane:path': 'q1.csv' } },
      { why: 'an empty context', edk, ctx: {} },
    ];
    for (const c of cases) {
      assert.equal(await unwrap(dekKeyring(dek), c.ctx ?? ctx, [c.edk]), undefined, `${who}: ${c.why}`);
    }
    // The genuine EDK still opens after the refused ones: failures do not stop the search.
    assert.ok(
      await unwrap(dekKeyring(dek), ctx, [...cases.map((c) => c.edk), edk]),
      `${who}: genuine EDK last`,
    );
  }
});

test('destroy() zeroes the wrapping key the keyring owns, and every later use throws KEYRING_DESTROYED', async () => {
  const key = randomBytes(32);
  const kept = Buffer.from(key);
  const keyring = new ZeroableAesKeyring(key, { namespace: DEK_NAMESPACE, name: dekKeyId(kept) });
  const sealed = await sealBuffer(Buffer.from('secret'), {
    keyring,
    binding: { datasource: 'd', path: 'p' },
  });
  assert.equal(keyring.destroyed, false);
  keyring.destroy();
  assert.equal(keyring.destroyed, true);
  assert.equal(key.length, 32);
  assert.ok(
    key.every((b) => b === 0),
    'the owned buffer is zeroed',
  );
  keyring.destroy(); // idempotent
  await assert.rejects(keyring.onEncrypt(new NodeEncryptionMaterial(suite, {})), destroyedError);
  await assert.rejects(keyring.onDecrypt(new NodeDecryptionMaterial(suite, {}), []), destroyedError);
  await assert.rejects(
    sealBuffer(Buffer.from('x'), { keyring, binding: { datasource: 'd', path: 'p' } }),
    destroyedError,
  );
  await assert.rejects(
    openBuffer(sealed, { keyring, expect: { datasource: 'd', path: 'p' } }),
    destroyedError,
  );
  // The same key in a live keyring still opens it: nothing but the destroyed copy changed.
  const reopened = await openBuffer(sealed, {
    keyring: dekKeyring(kept),
    expect: { datasource: 'd', path: 'p' },
  });
  assert.equal(reopened.toString(), 'secret');
});

test('dekKeyring copies the DEK once: the caller keeps its buffer, and changing it does not change the keyring', async () => {
  const dek = randomBytes(32);
  const original = Buffer.from(dek);
  const keyring = dekKeyring(dek);
  const { edks, dataKey } = await wrap(keyring, {});
  dek.fill(0xaa); // the caller wiping (or reusing) its buffer
  assert.deepEqual(await unwrap(keyring, {}, edks), dataKey);
  keyring.destroy();
  assert.ok(
    dek.every((b) => b === 0xaa),
    "destroy() leaves the caller's buffer alone",
  );
  assert.deepEqual(await unwrap(oracle(original), {}, edks), dataKey);
});

test('unusable keys and names are typed errors that never echo the key', () => {
  const cases: { why: string; make: () => unknown }[] = [
    { why: 'a 16-byte DEK', make: () => dekKeyring(randomBytes(16)) },
    {
      why: 'a 33-byte wrapping key',
      make: () => new ZeroableAesKeyring(randomBytes(33), { namespace: 'n', name: 'k' }),
    },
    {
      why: 'an empty key name',
      make: () => new ZeroableAesKeyring(randomBytes(32), { namespace: 'n', name: '' }),
    },
    {
      why: 'the reserved aws-kms namespace',
      make: () => dekKeyring(randomBytes(32), { namespace: 'aws-kms' }),
    },
  ];
  for (const c of cases) {
    assert.throws(c.make, (e: unknown) => isMembraneError(e, KeyringErrorCode.INVALID), c.why);
  }
});

test("defect 12.2: destroying the keys zeroes the keyrings' copies", async (t) => {
  const dekFile = join(dir, 'dek.key');
  const dek = randomBytes(32);
  writeFileSync(dekFile, dek, { mode: 0o600 });
  const spec = parseSpec(
    `version: 1
attestation: { provider: virtual, allowInsecureVirtual: true, virtualPolicyFile: ${join(dir, 'p.rego')} }
keys:
  keks: []
  deks: [{ name: d, source: { kind: file, path: ${dekFile} } }]
`,
    'inline',
  );
  const bundle = await acquireKeys(spec, { log: () => {} });
  const sources = {
    keys: bundle,
    identities: new Map(),
    audit: { emit: () => {} },
    meter: () => noopMeter,
    log: () => {},
    stateRoot: join(dir, 'state'),
    ownListeners: () => [],
  };
  // Every buffer allocated while the proxies take their keyrings: the keyrings' key copies are among them.
  const alloc = t.mock.method(Buffer, 'alloc');
  const volume = await createProxyContext(sources, 'volume', 'blob-volume');
  const egress = await createProxyContext(sources, 'egress', 'http-egress');
  const keyrings = [volume.dataKey('d'), egress.dataKey('d')];
  assert.equal(volume.dataKey('d'), keyrings[0], 'one keyring per DEK per proxy');
  const copies = alloc.mock.calls.map((c) => c.result as Buffer).filter((b) => b.equals(dek));
  alloc.mock.restore();
  assert.equal(copies.length, 2, 'one key copy per keyring');
  const binding = { datasource: 'd', path: 'p' };
  const sealed = await sealBuffer(Buffer.from('before'), { keyring: keyrings[0]!, binding });

  bundle.destroy();

  for (const copy of copies)
    assert.ok(
      copy.every((b) => b === 0),
      "a keyring's copy is zeroed",
    );
  for (const k of keyrings) {
    assert.equal((k as ZeroableAesKeyring).destroyed, true);
    await assert.rejects(sealBuffer(Buffer.from('after'), { keyring: k, binding }), destroyedError);
    await assert.rejects(openBuffer(sealed, { keyring: k, expect: binding }), destroyedError);
  }
  await volume.dispose();
  await egress.dispose();
});

test('disposing a proxy context destroys its keyrings; asking for one afterwards is a typed error', async () => {
  const dek = randomBytes(32);
  const ctx = await createProxyContext(
    {
      keys: { deks: new Map([['d', dek]]) },
      identities: new Map(),
      audit: { emit: () => {} },
      meter: () => noopMeter,
      log: () => {},
      stateRoot: join(dir, 'state-dispose'),
      ownListeners: () => [],
    },
    'web',
    'http-egress',
  );
  const keyring = ctx.dataKey('d') as ZeroableAesKeyring;
  await ctx.dispose();
  assert.equal(keyring.destroyed, true);
  assert.ok(
    dek.some((b) => b !== 0),
    "the runtime's own DEK buffer is the bundle's to wipe",
  );
  assert.throws(() => ctx.dataKey('d'), destroyedError);
});
