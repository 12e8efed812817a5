import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FINAL_FRAME_OVERHEAD,
  FrameLayout,
  REGULAR_FRAME_OVERHEAD,
} from '../../proxies/core/frame-layout.js';

const H = 300;

test('plaintext size -> ciphertext size -> plaintext size round-trips', () => {
  const cases: Array<[frame: number, plain: number, frames: number, finalLen: number]> = [
    [4096, 0, 1, 0],
    [4096, 1, 1, 1],
    [4096, 4095, 1, 4095],
    [4096, 4096, 1, 4096],
    [4096, 4097, 2, 1],
    [4096, 8192, 2, 4096],
    [1, 5, 5, 1],
    [65536, 10_000_000, 153, 10_000_000 - 152 * 65536],
  ];
  for (const [F, P, n, r] of cases) {
    const w = FrameLayout.fromPlaintextSize(H, F, P);
    assert.equal(w.frameCount, n, `frames for F=${F} P=${P}`);
    assert.equal(w.finalContentLength, r, `final length for F=${F} P=${P}`);
    assert.equal(w.ciphertextSize, H + (n - 1) * (F + REGULAR_FRAME_OVERHEAD) + FINAL_FRAME_OVERHEAD + r);
    const back = FrameLayout.fromCiphertextSize(H, F, w.ciphertextSize);
    assert.equal(back.plaintextSize, P);
    assert.equal(back.frameCount, n);
  }
});

test('an empty final frame after full frames (as the SDK writes) is a valid layout', () => {
  const F = 4096;
  const size = H + 2 * (F + REGULAR_FRAME_OVERHEAD) + FINAL_FRAME_OVERHEAD;
  const l = FrameLayout.fromCiphertextSize(H, F, size);
  assert.equal(l.frameCount, 3);
  assert.equal(l.finalContentLength, 0);
  assert.equal(l.plaintextSize, 2 * F);
  assert.deepEqual(l.all(), { first: 0, last: 2, ctStart: H, ctEnd: size });
});

test('sizes that fit no layout are rejected as truncated', () => {
  const F = 4096;
  const bad = [
    0,
    H - 1,
    H,
    H + FINAL_FRAME_OVERHEAD - 1,
    H + FINAL_FRAME_OVERHEAD + F + 1,
    H + FINAL_FRAME_OVERHEAD + F + 31,
  ];
  for (const size of bad) {
    assert.throws(
      () => FrameLayout.fromCiphertextSize(H, F, size),
      { code: 'FORMAT_TRUNCATED' },
      `size ${size}`,
    );
  }
});

test('frame offsets and sizes tile the body exactly', () => {
  for (const [F, P] of [
    [16, 100],
    [4096, 4096 * 3],
    [7, 7 * 5 + 3],
  ] as const) {
    const l = FrameLayout.fromPlaintextSize(H, F, P);
    let off = H;
    let plain = 0;
    for (let i = 0; i < l.frameCount; i++) {
      assert.equal(l.frameOffset(i), off);
      assert.equal(l.plaintextOffset(i), plain);
      off += l.frameSize(i);
      plain += l.contentLength(i);
    }
    assert.equal(off, l.ciphertextSize);
    assert.equal(plain, P);
  }
});

test('span maps plaintext ranges to the frames that hold them', () => {
  const F = 100;
  const l = FrameLayout.fromPlaintextSize(H, F, 1050); // 11 frames, final carries 50
  const cases: Array<
    [start: number, end: number, first: number, last: number] | [number, number, undefined]
  > = [
    [0, 1, 0, 0],
    [0, 100, 0, 0],
    [99, 101, 0, 1],
    [100, 200, 1, 1],
    [1000, 1050, 10, 10],
    [1049, 5000, 10, 10],
    [1050, 1060, undefined],
    [5, 5, undefined],
  ];
  for (const [s, e, first, last] of cases) {
    const span = l.span(s, e);
    if (first === undefined) {
      assert.equal(span, undefined, `[${s},${e})`);
      continue;
    }
    assert.ok(span, `[${s},${e})`);
    assert.equal(span.first, first);
    assert.equal(span.last, last);
    assert.equal(span.ctStart, l.frameOffset(first));
    assert.equal(span.ctEnd, l.frameOffset(last!) + l.frameSize(last!));
  }
  assert.throws(() => l.span(-1, 3), { code: 'FORMAT_USAGE' });
  assert.throws(() => l.span(10, 3), { code: 'FORMAT_USAGE' });
  assert.throws(() => l.frameOffset(11), { code: 'FORMAT_USAGE' });
});
