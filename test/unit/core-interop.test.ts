/**
 * Interop with @aws-crypto/client-node as the oracle, both directions, and the
 * core's own read paths (whole, streaming, random access, parallel) agreeing.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { after, test } from 'node:test';
import {
  allocShared,
  decryptIterable,
  dekKeyring,
  encryptIterable,
  ObjectReader,
  openBuffer,
  ParallelDecryptor,
  rsaKeyring,
  sealBuffer,
} from '../../proxies/core/index.js';
import { bytes, collect, sdk, sdkEncrypt } from '../helpers/core.js';

const binding = { datasource: 'ledger-a', path: 'records/2026/q3.csv' };
const dek = randomBytes(32);
const keyring = dekKeyring(dek);
const pool = new ParallelDecryptor({ threads: 3, minParallelBytes: 1 });
after(() => pool.close());

const sizes = (F: number) => [0, 1, F - 1, F, F + 1, 3 * F, 3 * F + 7];

/** Every read path of the core must return `expected` for `ct`. */
async function assertAllPathsRead(ct: Buffer, expected: Buffer, label: string): Promise<void> {
  assert.ok((await openBuffer(ct, { keyring, expect: binding })).equals(expected), `${label}: openBuffer`);
  // Streaming, fed in awkward chunk sizes.
  const chunks: Buffer[] = [];
  for (let off = 0, step = 1; off < ct.length; off += step, step = (step * 7 + 3) % 9000 || 1)
    chunks.push(ct.subarray(off, off + step));
  assert.ok(
    (await collect(decryptIterable(chunks, { keyring, expect: binding }))).equals(expected),
    `${label}: stream`,
  );
  // Random access at random offsets and lengths.
  const reader = await ObjectReader.open(async (s, e) => ct.subarray(s, e), { keyring, expect: binding });
  try {
    const layout = reader.layout(ct.length);
    assert.equal(layout.plaintextSize, expected.length, `${label}: size from ciphertext size`);
    for (let i = 0; i < 25; i++) {
      const s = Math.floor(Math.random() * (expected.length + 1));
      const e = s + Math.floor(Math.random() * (expected.length - s + 10));
      const got = await reader.read(layout, s, e, async (a, b) => ct.subarray(a, b));
      assert.ok(got.equals(expected.subarray(s, Math.min(e, expected.length))), `${label}: read [${s},${e})`);
    }
    // Parallel, whole object, from shared memory.
    const shared = allocShared(ct.length - layout.headerLength);
    ct.copy(shared, 0, layout.headerLength);
    const all = layout.all();
    const par = await pool.decryptSpan(reader, layout, all, shared);
    assert.ok(par.equals(expected), `${label}: parallel`);
  } finally {
    reader.close();
  }
}

for (const F of [4096, 1, 65536, 1000]) {
  test(`SDK-written messages (frame length ${F}) decrypt with the core on every path`, async () => {
    for (const n of sizes(F).filter((n) => n <= 300_000)) {
      const pt = bytes(n, n + F);
      await assertAllPathsRead(await sdkEncrypt(keyring, pt, binding, F), pt, `F=${F} n=${n}`);
    }
  });
  test(`core-written messages (frame length ${F}) decrypt with the SDK`, async () => {
    for (const n of sizes(F).filter((n) => n <= 300_000)) {
      const pt = bytes(n, n * 3 + F);
      const ct = await sealBuffer(pt, { keyring, binding, frameLength: F });
      const { plaintext, messageHeader } = await sdk.decrypt(keyring, ct);
      assert.ok(Buffer.from(plaintext).equals(pt), `F=${F} n=${n}`);
      assert.equal(messageHeader.suiteId, 0x0478);
      assert.equal(messageHeader.encryptionContext['membrane:path'], binding.path);
      await assertAllPathsRead(ct, pt, `core F=${F} n=${n}`);
    }
  });
}

test('the empty message is a single final frame and round-trips both ways', async () => {
  const ours = await sealBuffer(Buffer.alloc(0), { keyring, binding, frameLength: 4096 });
  assert.equal((await sdk.decrypt(keyring, ours)).plaintext.length, 0);
  const theirs = await sdkEncrypt(keyring, Buffer.alloc(0), binding, 4096);
  assert.equal((await openBuffer(theirs, { keyring, expect: binding })).length, 0);
  assert.equal(ours.length, theirs.length);
});

test('RSA-OAEP-SHA256 recipients: seal to a public key, open with the private key, both ways with the SDK', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 3072 });
  const sealer = rsaKeyring({ publicKey });
  const opener = rsaKeyring({ privateKey });
  const pt = bytes(70_000, 9);
  const ct = await sealBuffer(pt, { keyring: sealer, binding, frameLength: 4096 });
  assert.ok(Buffer.from((await sdk.decrypt(opener, ct)).plaintext).equals(pt));
  assert.ok((await openBuffer(ct, { keyring: opener, expect: binding })).equals(pt));
  const theirs = await sdkEncrypt(sealer, pt, binding, 4096);
  assert.ok((await openBuffer(theirs, { keyring: opener, expect: binding })).equals(pt));
  // A public key alone cannot open.
  await assert.rejects(openBuffer(ct, { keyring: sealer, expect: binding }), { code: 'FORMAT_NO_KEY' });
});

test('streaming encryption of a chunked source equals whole-buffer semantics', async () => {
  const pt = bytes(1_000_003, 4);
  const chunks = [];
  for (let off = 0, k = 1; off < pt.length; off += k * 997, k++) chunks.push(pt.subarray(off, off + k * 997));
  const ct = await collect(encryptIterable(chunks, { keyring, binding, frameLength: 65536 }));
  assert.ok(Buffer.from((await sdk.decrypt(keyring, ct)).plaintext).equals(pt));
  assert.ok((await openBuffer(ct, { keyring, expect: binding })).equals(pt));
});
