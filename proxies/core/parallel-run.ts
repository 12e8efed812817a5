/** The loop both the main thread and workers run over their share of frames. */
import type { FrameCipher } from './frame-cipher.js';
import { REGULAR_FRAME_OVERHEAD } from './frame-layout.js';

export interface FrameRun {
  /** First frame index of this run, and how many frames. */
  first: number;
  count: number;
  /** Index of the object's final frame and its content length. */
  finalIndex: number;
  finalContentLength: number;
  frameLength: number;
  ct: SharedArrayBuffer | ArrayBuffer;
  /** Byte offset in `ct` where frame `first` starts. */
  ctOffset: number;
  out: SharedArrayBuffer | ArrayBuffer;
  /** Byte offset in `out` for frame `first`'s plaintext. */
  outOffset: number;
  where?: string;
}

export function runFrames(frames: FrameCipher, r: FrameRun): void {
  const ct = Buffer.from(r.ct);
  const out = new Uint8Array(r.out);
  let c = r.ctOffset;
  let o = r.outOffset;
  for (let i = r.first; i < r.first + r.count; i++) {
    const final = i === r.finalIndex;
    const len = final ? r.finalContentLength : r.frameLength;
    const size = len + (final ? REGULAR_FRAME_OVERHEAD + 8 : REGULAR_FRAME_OVERHEAD);
    frames.open(i, final, ct.subarray(c, c + size), out.subarray(o, o + len), r.where);
    c += size;
    o += len;
  }
}
