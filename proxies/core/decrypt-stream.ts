/**
 * Streaming decryption with bounded memory: input chunks are queued until a whole
 * frame is present, then the frame is verified and only then released. Memory is
 * one frame plus one input chunk. Ends with a typed error if the final frame is
 * missing (truncation, dropped final frame) or bytes follow it.
 *
 * Frames are authenticated one by one, so a stream that is cut short has already
 * released the frames before the cut; consumers that must not keep partial output
 * (unprotect, datasinks) write to a temporary and commit only on success.
 */
import { Duplex } from 'node:stream';
import { FormatErrorCode, formatError } from './errors.js';
import { FrameCipher } from './frame-cipher.js';
import { FINAL_FRAME_MARKER, FINAL_FRAME_OVERHEAD } from './frame-layout.js';
import { parseHeader } from './header.js';
import { ObjectReader, type OpenOptions } from './reader.js';
import { IV_LENGTH, MAX_FRAMES } from './suite.js';

/** FIFO of chunks that hands out contiguous views, copying only across chunk boundaries. */
class ByteQueue {
  private chunks: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    if (b.length === 0) return;
    this.chunks.push(b);
    this.length += b.length;
  }
  /**
   * Contiguous view of the first n bytes (n <= length), without consuming. When
   * they straddle chunks, exactly n bytes (one frame) are gathered, not the whole
   * queue: profiling showed Buffer.concat of every queued chunk at 30 % of
   * streaming decrypt, ahead of AES-GCM itself.
   */
  peek(n: number): Buffer {
    const head = this.chunks[0]!;
    if (head.length >= n) return head.subarray(0, n);
    const merged = Buffer.allocUnsafe(n);
    let off = 0;
    let used = 0;
    while (off < n) {
      const c = this.chunks[used]!;
      const take = Math.min(c.length, n - off);
      c.copy(merged, off, 0, take);
      off += take;
      if (take < c.length) {
        this.chunks[used] = c.subarray(take);
        break;
      }
      used++;
    }
    this.chunks.splice(0, used, merged);
    return merged;
  }
  consume(n: number): void {
    this.length -= n;
    while (n > 0) {
      const head = this.chunks[0]!;
      if (head.length <= n) {
        this.chunks.shift();
        n -= head.length;
      } else {
        this.chunks[0] = head.subarray(n);
        n = 0;
      }
    }
  }
}

export async function* decryptIterable(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  opts: OpenOptions,
): AsyncGenerator<Buffer> {
  const where = opts.where ?? opts.expect.path;
  const q = new ByteQueue();
  let reader: ObjectReader | undefined;
  let index = 0;
  let done = false;
  try {
    for await (const chunk of source) {
      q.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      if (!reader) {
        if (q.length === 0) continue;
        const parsed = parseHeader(q.peek(q.length), where);
        if ('needBytes' in parsed) continue;
        reader = await ObjectReader.fromHeaderBytes(q.peek(parsed.header.length), opts);
        q.consume(parsed.header.length);
      }
      if (done) {
        if (q.length > 0)
          throw formatError(FormatErrorCode.TRAILING_DATA, 'data follows the final frame', where);
        continue;
      }
      // Plaintext of every frame this chunk completes goes into one buffer: no per-frame
      // allocation and no concat. A frame's plaintext is shorter than its ciphertext, so
      // the queued byte count bounds it.
      let out: Buffer | undefined;
      let produced = 0;
      for (;;) {
        const next = nextFrame(q, reader.frameLength, where);
        if (!next) break;
        if (index >= MAX_FRAMES) throw formatError(FormatErrorCode.MALFORMED, 'too many frames', where);
        out ??= Buffer.allocUnsafeSlow(q.length); // unpooled: views of it never expose unrelated pooled bytes
        reader.openFrame(
          index++,
          next.final,
          q.peek(next.size),
          out.subarray(produced, produced + next.contentLength),
        );
        produced += next.contentLength;
        q.consume(next.size);
        if (next.final) {
          done = true;
          if (q.length > 0)
            throw formatError(FormatErrorCode.TRAILING_DATA, 'data follows the final frame', where);
          break;
        }
      }
      if (out && produced > 0) yield out.subarray(0, produced);
    }
    if (!reader)
      throw formatError(
        FormatErrorCode.TRUNCATED,
        `object ends inside its header (${q.length} bytes)`,
        where,
      );
    if (!done)
      throw formatError(
        FormatErrorCode.TRUNCATED,
        `object ends without its final frame (after frame ${index - 1})`,
        where,
      );
  } finally {
    reader?.close();
  }
}

/** Size and kind of the frame at the head of `q`, once enough bytes are queued to know and hold it. */
function nextFrame(
  q: ByteQueue,
  frameLength: number,
  where: string,
): { size: number; contentLength: number; final: boolean } | undefined {
  if (q.length < 4) return undefined;
  if (q.peek(4).readUInt32BE(0) !== FINAL_FRAME_MARKER) {
    const size = FrameCipher.frameSize(false, frameLength);
    return q.length >= size ? { size, contentLength: frameLength, final: false } : undefined;
  }
  const lenAt = 4 + 4 + IV_LENGTH;
  if (q.length < lenAt + 4) return undefined;
  const contentLength = q.peek(lenAt + 4).readUInt32BE(lenAt);
  if (contentLength > frameLength) {
    throw formatError(
      FormatErrorCode.FRAME_AUTH,
      `final frame claims ${contentLength} bytes, more than the frame length ${frameLength}`,
      where,
    );
  }
  const size = FINAL_FRAME_OVERHEAD + contentLength;
  return q.length >= size ? { size, contentLength, final: true } : undefined;
}

export function createDecryptStream(opts: OpenOptions): Duplex {
  return Duplex.from(async function* (source: AsyncIterable<Uint8Array>) {
    yield* decryptIterable(source, opts);
  });
}

/** Decrypts a whole buffer; all-or-nothing. */
export async function openBuffer(ciphertext: Buffer, opts: OpenOptions): Promise<Buffer> {
  const reader = await ObjectReader.fromHeaderBytes(ciphertext, opts);
  try {
    const layout = reader.layout(ciphertext.length);
    const out = Buffer.alloc(layout.plaintextSize);
    reader.decryptSpan(layout, layout.all(), ciphertext.subarray(layout.headerLength), out);
    return out;
  } finally {
    reader.close();
  }
}
