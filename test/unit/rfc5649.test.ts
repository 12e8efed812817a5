import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { isMembraneError } from '../../policy/errors.js';
import { aesKeyUnwrapPad, aesKeyWrapPad } from '../../skr-client/crypto/rfc5649.js';

const hex = (s: string) => Buffer.from(s, 'hex');

// RFC 5649 section 6.
const rfcVectors = [
  {
    name: 'RFC 5649 §6 20-octet key, 192-bit KEK',
    kek: '5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8',
    key: 'c37b7e6492584340bed12207808941155068f738',
    wrapped: '138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a',
  },
  {
    name: 'RFC 5649 §6 7-octet key, 192-bit KEK',
    kek: '5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8',
    key: '466f7250617369',
    wrapped: 'afbeb0f07dfbf5419200f2ccb50bb24f',
  },
];

for (const v of rfcVectors) {
  test(`${v.name}: wrap`, () => {
    assert.equal(aesKeyWrapPad(hex(v.kek), hex(v.key)).toString('hex'), v.wrapped);
  });
  test(`${v.name}: unwrap`, () => {
    assert.equal(aesKeyUnwrapPad(hex(v.kek), hex(v.wrapped)).toString('hex'), v.key);
  });
}

// OpenSSL's id-aes*-wrap-pad implements the same RFC; agreeing with it for every
// length class (single block, exact multiple, padded) covers 128- and 256-bit KEKs.
const opensslWrap = (kek: Buffer, key: Buffer) => {
  const c = createCipheriv(`id-aes${kek.length * 8}-wrap-pad`, kek, hex('a65959a6'));
  return Buffer.concat([c.update(key), c.final()]);
};
for (const kekBits of [128, 192, 256]) {
  for (const len of [1, 7, 8, 9, 16, 20, 31, 32, 33, 64, 1217]) {
    test(`agrees with OpenSSL: ${kekBits}-bit KEK, ${len}-octet key, and round-trips`, () => {
      const kek = randomBytes(kekBits / 8);
      const key = randomBytes(len);
      const wrapped = aesKeyWrapPad(kek, key);
      assert.deepEqual(wrapped, opensslWrap(kek, key));
      assert.equal(wrapped.length, Math.ceil(len / 8) * 8 + 8);
      assert.deepEqual(aesKeyUnwrapPad(kek, wrapped), key);
    });
  }
}

const kek192 = hex(rfcVectors[0]!.kek);
const w20 = hex(rfcVectors[0]!.wrapped);
const w7 = hex(rfcVectors[1]!.wrapped);
const tamperCases: Array<{ name: string; kek: Buffer; wrapped: Buffer; code: string }> = [
  { name: 'flipped first byte (AIV)', kek: kek192, wrapped: flip(w20, 0), code: 'KEYWRAP_INTEGRITY' },
  { name: 'flipped MLI byte', kek: kek192, wrapped: flip(w20, 7), code: 'KEYWRAP_INTEGRITY' },
  { name: 'flipped last byte', kek: kek192, wrapped: flip(w20, w20.length - 1), code: 'KEYWRAP_INTEGRITY' },
  { name: 'flipped byte, single-block form', kek: kek192, wrapped: flip(w7, 3), code: 'KEYWRAP_INTEGRITY' },
  { name: 'wrong KEK', kek: flip(kek192, 10), wrapped: w20, code: 'KEYWRAP_INTEGRITY' },
  { name: 'truncated by one block', kek: kek192, wrapped: w20.subarray(0, 24), code: 'KEYWRAP_INTEGRITY' },
  { name: 'not a multiple of 8', kek: kek192, wrapped: w20.subarray(0, 30), code: 'KEYWRAP_INVALID' },
  { name: 'shorter than 16 bytes', kek: kek192, wrapped: w20.subarray(0, 8), code: 'KEYWRAP_INVALID' },
  { name: 'KEK of 20 bytes', kek: randomBytes(20), wrapped: w20, code: 'KEYWRAP_INVALID' },
];
for (const c of tamperCases) {
  test(`unwrap refuses: ${c.name}`, () => {
    assert.throws(
      () => aesKeyUnwrapPad(c.kek, c.wrapped),
      (e: unknown) => isMembraneError(e, c.code),
    );
  });
}

test('wrap refuses an empty key and a bad KEK size', () => {
  assert.throws(
    () => aesKeyWrapPad(randomBytes(32), Buffer.alloc(0)),
    (e: unknown) => isMembraneError(e, 'KEYWRAP_INVALID'),
  );
  assert.throws(
    () => aesKeyWrapPad(randomBytes(15), randomBytes(16)),
    (e: unknown) => isMembraneError(e, 'KEYWRAP_INVALID'),
  );
});

test('a padded key with non-zero padding is refused', () => {
  // Build a wrap whose MLI says 7 but whose 8th byte is non-zero: wrap 8 bytes, then
  // re-encrypt the block with MLI patched to 7 via OpenSSL-free construction.
  const kek = randomBytes(16);
  const c = createCipheriv('aes-128-ecb', kek, null);
  c.setAutoPadding(false);
  const block = Buffer.concat([hex('a65959a600000007'), hex('466f725061736901')]);
  const forged = Buffer.concat([c.update(block), c.final()]);
  assert.throws(
    () => aesKeyUnwrapPad(kek, forged),
    (e: unknown) => isMembraneError(e, 'KEYWRAP_INTEGRITY'),
  );
});

function flip(b: Buffer, i: number): Buffer {
  const out = Buffer.from(b);
  out[i] = out[i]! ^ 0x01;
  return out;
}
