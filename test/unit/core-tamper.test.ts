/**
 * Tamper matrix: every manipulation a storage operator can make yields a typed
 * error on every read path, and no plaintext of a failed frame is released.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { AlgorithmSuiteIdentifier } from '@aws-crypto/client-node';
import { parseHeader } from '../../proxies/core/header.js';
import {
  decryptIterable,
  dekKeyring,
  ObjectReader,
  openBuffer,
  sealBuffer,
} from '../../proxies/core/index.js';
import { bytes, contextOf, legacySdk, sdk, sdkEncrypt } from '../helpers/core.js';

const F = 4096;
const binding = { datasource: 'ledger-a', path: 'accounts.csv' };
const keyring = dekKeyring(randomBytes(32));
const plaintext = bytes(3 * F + 1000, 77); // frames 0,1,2 full; frame 3 final with 1000 bytes

const original = await sealBuffer(plaintext, { keyring, binding, frameLength: F });
const other = await sealBuffer(bytes(plaintext.length, 78), { keyring, binding, frameLength: F });
const parsed = parseHeader(original);
assert.ok('header' in parsed);
const H = parsed.header.length;
const bodyLen = parsed.header.body.length;
const R = F + 32;
const frameAt = (i: number) => H + i * R;
const finalAt = frameAt(3);
const aadLen = original.readUInt16BE(35);
const edkStart = 37 + aadLen + 2; // after the EDK count

const flip = (buf: Buffer, at: number, mask = 0x01) => {
  const b = Buffer.from(buf);
  b[at]! ^= mask;
  return b;
};
const splice = (buf: Buffer, at: number, len: number, from: Buffer) =>
  Buffer.concat([buf.subarray(0, at), from.subarray(at, at + len), buf.subarray(at + len)]);
const withFrameLength = (v: number) => {
  const b = Buffer.from(original);
  b.writeUInt32BE(v, bodyLen - 32 - 4);
  return b;
};

interface Case {
  name: string;
  make: () => Promise<Buffer> | Buffer;
  code: string | RegExp;
  /** First frame whose plaintext must never appear (streaming may release frames before it). */
  badFrame?: number;
  expect?: typeof binding;
}

const cases: Case[] = [
  { name: 'bit flip: format version', make: () => flip(original, 0), code: 'FORMAT_MALFORMED' },
  { name: 'bit flip: suite id', make: () => flip(original, 2), code: 'FORMAT_UNSUPPORTED' },
  { name: 'bit flip: message id', make: () => flip(original, 10), code: 'FORMAT_HEADER_AUTH' },
  {
    name: 'bit flip: encryption context (path value)',
    make: () => flip(original, 37 + aadLen - 1),
    code: 'FORMAT_CONTEXT_MISMATCH',
  },
  { name: 'bit flip: EDK provider id', make: () => flip(original, edkStart + 3), code: 'FORMAT_NO_KEY' },
  {
    name: 'bit flip: EDK ciphertext',
    make: () => flip(original, 37 + aadLen + 2 + 60),
    code: /FORMAT_NO_KEY|FORMAT_HEADER_AUTH/,
  },
  {
    name: 'bit flip: frame length field',
    make: () => flip(original, bodyLen - 33),
    code: 'FORMAT_HEADER_AUTH',
  },
  { name: 'bit flip: key commitment', make: () => flip(original, bodyLen - 5), code: 'FORMAT_HEADER_AUTH' },
  { name: 'bit flip: header auth tag', make: () => flip(original, H - 1), code: 'FORMAT_HEADER_AUTH' },
  { name: 'frame length 0', make: () => withFrameLength(0), code: 'FORMAT_FRAME_LENGTH' },
  {
    name: 'frame length absurd (2^32-1)',
    make: () => withFrameLength(0xffff_ffff),
    code: 'FORMAT_FRAME_LENGTH',
  },
  {
    name: 'bit flip: frame 1 sequence number',
    make: () => flip(original, frameAt(1) + 3),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 1,
  },
  {
    name: 'bit flip: frame 1 IV',
    make: () => flip(original, frameAt(1) + 10),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 1,
  },
  {
    name: 'bit flip: frame 1 body',
    make: () => flip(original, frameAt(1) + 100),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 1,
  },
  {
    name: 'bit flip: frame 1 tag',
    make: () => flip(original, frameAt(1) + R - 1),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 1,
  },
  {
    name: 'bit flip: final frame body',
    make: () => flip(original, finalAt + 30),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 3,
  },
  {
    name: 'bit flip: final frame marker',
    make: () => flip(original, finalAt),
    code: /FORMAT_TRUNCATED|FORMAT_FRAME_AUTH/,
    badFrame: 3,
  },
  {
    name: 'final frame length field +1',
    make: () => flip(original, finalAt + 4 + 4 + 12 + 3),
    code: /FORMAT_FRAME_AUTH|FORMAT_TRUNCATED/,
    badFrame: 3,
  },
  {
    name: 'final frame length field huge',
    make: () => flip(original, finalAt + 4 + 4 + 12, 0x80),
    code: /FORMAT_FRAME_AUTH|FORMAT_TRUNCATED/,
    badFrame: 3,
  },
  {
    name: 'truncated at a frame boundary (after frame 1)',
    make: () => original.subarray(0, frameAt(2)),
    code: 'FORMAT_TRUNCATED',
    badFrame: 2,
  },
  {
    name: 'final frame dropped',
    make: () => original.subarray(0, finalAt),
    code: 'FORMAT_TRUNCATED',
    badFrame: 3,
  },
  {
    name: 'truncated inside the final frame',
    make: () => original.subarray(0, original.length - 1),
    code: /FORMAT_TRUNCATED|FORMAT_FRAME_AUTH/,
    badFrame: 3,
  },
  { name: 'truncated inside the header', make: () => original.subarray(0, H - 5), code: 'FORMAT_TRUNCATED' },
  {
    name: 'one byte after the final frame',
    make: () => Buffer.concat([original, Buffer.from([0])]),
    code: 'FORMAT_TRAILING_DATA',
    badFrame: 4,
  },
  {
    name: 'a whole frame after the final frame',
    make: () => Buffer.concat([original, original.subarray(frameAt(0), frameAt(1))]),
    code: 'FORMAT_TRAILING_DATA',
    badFrame: 4,
  },
  {
    name: 'frames 0 and 1 swapped',
    make: () =>
      Buffer.concat([
        original.subarray(0, H),
        original.subarray(frameAt(1), frameAt(2)),
        original.subarray(frameAt(0), frameAt(1)),
        original.subarray(frameAt(2)),
      ]),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 0,
  },
  {
    name: 'frame 2 spliced from another object under the same key',
    make: () => splice(original, frameAt(2), R, other),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 2,
  },
  {
    name: 'header from another object under the same key',
    make: () => Buffer.concat([other.subarray(0, H), original.subarray(H)]),
    code: 'FORMAT_FRAME_AUTH',
    badFrame: 0,
  },
  {
    name: 'object bound to another path (moved/swapped)',
    make: () =>
      sealBuffer(plaintext, { keyring, binding: { ...binding, path: 'other.csv' }, frameLength: F }),
    code: 'FORMAT_CONTEXT_MISMATCH',
  },
  {
    name: 'object from another datasource',
    make: () =>
      sealBuffer(plaintext, { keyring, binding: { ...binding, datasource: 'ledger-b' }, frameLength: F }),
    code: 'FORMAT_CONTEXT_MISMATCH',
  },
  {
    name: 'wrong key',
    make: () => sealBuffer(plaintext, { keyring: dekKeyring(randomBytes(32)), binding, frameLength: F }),
    code: 'FORMAT_NO_KEY',
  },
  {
    name: 'signing suite 0x0578',
    make: async () =>
      sdkEncrypt(
        keyring,
        plaintext,
        binding,
        F,
        AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
      ),
    code: 'FORMAT_UNSUPPORTED',
  },
  {
    name: 'non-committing suite 0x0178 (v1 format)',
    make: async () =>
      Buffer.from(
        (
          await legacySdk.encrypt(keyring, plaintext, {
            encryptionContext: contextOf(binding),
            frameLength: F,
            suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA256,
          })
        ).result,
      ),
    code: 'FORMAT_UNSUPPORTED',
  },
  {
    name: 'non-committing signing suite 0x0378 (v1 format)',
    make: async () =>
      Buffer.from(
        (
          await legacySdk.encrypt(keyring, plaintext, {
            encryptionContext: contextOf(binding),
            frameLength: F,
            suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
          })
        ).result,
      ),
    code: 'FORMAT_UNSUPPORTED',
  },
  { name: 'empty input', make: () => Buffer.alloc(0), code: 'FORMAT_TRUNCATED' },
  { name: '1-byte input (version byte only)', make: () => Buffer.from([0x02]), code: 'FORMAT_TRUNCATED' },
  { name: '1-byte input (garbage)', make: () => Buffer.from([0x7f]), code: 'FORMAT_MALFORMED' },
  {
    name: 'plaintext file instead of an object',
    make: () => Buffer.from('id,amount\n1,100\n'),
    code: 'FORMAT_MALFORMED',
  },
];

for (const c of cases) {
  test(`tamper: ${c.name}`, async () => {
    const ct = await c.make();
    const expect = c.expect ?? binding;
    const opts = { keyring, expect };
    // Whole-object path: all or nothing.
    await assert.rejects(openBuffer(ct, opts), { code: c.code }, 'openBuffer');
    // Streaming path: typed error; what was released before it is a verified prefix.
    const released: Buffer[] = [];
    await assert.rejects(
      (async () => {
        for await (const p of decryptIterable([ct.subarray(0, 1000), ct.subarray(1000)], opts))
          released.push(p);
      })(),
      { code: c.code },
      'stream',
    );
    const got = Buffer.concat(released);
    assert.ok(got.equals(plaintext.subarray(0, got.length)), 'released bytes are authentic plaintext');
    assert.ok(
      got.length <= (c.badFrame ?? 0) * F,
      `nothing of frame ${c.badFrame ?? 0} or later was released (${got.length} bytes)`,
    );
    // Random-access path over the whole object.
    await assert.rejects(
      (async () => {
        const r = await ObjectReader.open(async (s, e) => ct.subarray(s, e), opts);
        try {
          await r.read(r.layout(ct.length), 0, plaintext.length, async (s, e) => ct.subarray(s, e));
        } finally {
          r.close();
        }
      })(),
      { code: c.code },
      'random access',
    );
  });
}

test('the untouched object reads back (the matrix starts from a valid message)', async () => {
  assert.ok((await openBuffer(original, { keyring, expect: binding })).equals(plaintext));
  assert.ok(Buffer.from((await sdk.decrypt(keyring, original)).plaintext).equals(plaintext));
});

test('random access: a tampered frame fails alone, its neighbours still read, and the failed read returns nothing', async () => {
  const ct = flip(original, frameAt(1) + 100);
  const r = await ObjectReader.open(async (s, e) => ct.subarray(s, e), { keyring, expect: binding });
  const layout = r.layout(ct.length);
  const fetch = async (s: number, e: number) => ct.subarray(s, e);
  assert.ok((await r.read(layout, 0, F, fetch)).equals(plaintext.subarray(0, F)));
  assert.ok((await r.read(layout, 2 * F, 3 * F, fetch)).equals(plaintext.subarray(2 * F, 3 * F)));
  const out = Buffer.alloc(2 * F, 0xee);
  const span = layout.span(0, 2 * F)!;
  assert.throws(() => r.decryptSpan(layout, span, ct.subarray(span.ctStart, span.ctEnd), out), {
    code: 'FORMAT_FRAME_AUTH',
    message: /frame 1/,
  });
  assert.ok(
    out.every((b) => b === 0),
    'destination zeroed, including the frame that did verify',
  );
  r.close();
});
