import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { type Aead, aeadBackend, createAeadWith } from '../../proxies/core/aead.js';

test('the native binding is built and selected (CI builds it; the fallback is for odd platforms)', () => {
  assert.equal(aeadBackend, 'openssl-native');
});

test('native and node:crypto backends produce identical ciphertexts and both fail closed', () => {
  const key = randomBytes(32);
  const nat = createAeadWith('openssl-native', key);
  const js = createAeadWith('node-crypto', key);
  assert.ok(nat && js);
  const backends: Aead[] = [nat, js];
  for (const len of [0, 1, 15, 16, 17, 4096, 65536 + 3]) {
    const iv = randomBytes(12);
    const aad = randomBytes(len % 50);
    const pt = randomBytes(len);
    const [c1, t1, c2, t2] = [Buffer.alloc(len), Buffer.alloc(16), Buffer.alloc(len), Buffer.alloc(16)];
    nat.seal(iv, aad, pt, t1, c1);
    js.seal(iv, aad, pt, t2, c2);
    assert.ok(c1.equals(c2) && t1.equals(t2), `len ${len}`);
    for (const backend of backends) {
      const out = Buffer.alloc(len);
      assert.equal(backend.open(iv, aad, c1, t1, out), true);
      assert.ok(out.equals(pt));
      const badTag = Buffer.from(t1);
      badTag[0]! ^= 1;
      const out2 = Buffer.alloc(len, 0xaa);
      assert.equal(backend.open(iv, aad, c1, badTag, out2), false);
      assert.ok(
        out2.every((b) => b === 0),
        'output zeroed on failure',
      );
    }
  }
  // In-place decryption (ciphertext and output alias) is allowed by the native backend.
  const iv = randomBytes(12);
  const pt = randomBytes(1000);
  const buf = Buffer.alloc(1000);
  const tag = Buffer.alloc(16);
  nat.seal(iv, Buffer.alloc(0), pt, tag, buf);
  assert.equal(nat.open(iv, Buffer.alloc(0), buf, tag, buf), true);
  assert.ok(buf.equals(pt));
  nat.destroy();
  assert.throws(() => nat.open(iv, Buffer.alloc(0), buf, tag, buf));
});
