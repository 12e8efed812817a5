/**
 * Parallel decryption of large ranges across worker threads. Frames are
 * independent (own IV, own tag), so a range splits into contiguous runs, one per
 * thread; the calling thread decrypts one run itself instead of idling. Input and
 * output live in SharedArrayBuffers so no bytes are copied between threads.
 *
 * All-or-nothing: if any run fails, the whole output is zeroed before the error
 * is thrown. Small ranges (below `minParallelBytes`) are decrypted inline: a
 * message round trip costs more than decrypting a few frames.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { MembraneError } from '../../policy/errors.js';
import { FormatErrorCode, formatError } from './errors.js';
import { FrameCipher } from './frame-cipher.js';
import type { FrameLayout, FrameSpan } from './frame-layout.js';
import type { FrameRun } from './parallel-run.js';
import { runFrames } from './parallel-run.js';
import { internalSecrets, type ObjectReader, plainLength } from './reader.js';

export interface FrameJob extends FrameRun {
  id: number;
  key: ArrayBuffer;
  messageId: ArrayBuffer;
}

interface Pending {
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface ParallelOptions {
  /** Threads in total, the caller's included. Default: available parallelism. */
  threads?: number;
  /** Ranges smaller than this are decrypted on the calling thread. Default 1 MiB. */
  minParallelBytes?: number;
}

/** Allocates a Buffer backed by shared memory: pass such buffers to avoid a copy. */
export function allocShared(size: number): Buffer {
  return Buffer.from(new SharedArrayBuffer(size));
}

export class ParallelDecryptor {
  readonly threads: number;
  private readonly minParallelBytes: number;
  private readonly workers: Worker[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(opts: ParallelOptions = {}) {
    this.threads = Math.max(1, opts.threads ?? availableParallelism());
    this.minParallelBytes = opts.minParallelBytes ?? 1 << 20;
    for (let i = 0; i < this.threads - 1; i++) {
      const w = new Worker(new URL('./decrypt-worker.js', import.meta.url));
      w.on('message', (m: { id: number; ok: boolean; code?: string; message?: string }) => {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.ok) p.resolve();
        else p.reject(new MembraneError(m.code ?? FormatErrorCode.FRAME_AUTH, m.message ?? 'frame failed'));
      });
      w.on('error', (e) => {
        for (const [id, p] of this.pending) {
          this.pending.delete(id);
          p.reject(e);
        }
      });
      w.unref();
      this.workers.push(w);
    }
  }

  /**
   * Decrypts `span` of `reader`'s object from `ciphertext` (bytes [span.ctStart, span.ctEnd))
   * into `out` (or a new shared buffer), returning the plaintext of those frames.
   */
  async decryptSpan(
    reader: ObjectReader,
    layout: FrameLayout,
    span: FrameSpan,
    ciphertext: Buffer,
    out?: Buffer,
  ): Promise<Buffer> {
    const plainBytes = plainLength(layout, span);
    if (ciphertext.length !== span.ctEnd - span.ctStart) {
      throw formatError(
        FormatErrorCode.TRUNCATED,
        `expected ${span.ctEnd - span.ctStart} ciphertext bytes, got ${ciphertext.length}`,
        reader.where,
      );
    }
    const frames = span.last - span.first + 1;
    if (this.workers.length === 0 || plainBytes < this.minParallelBytes || frames < 2) {
      const dst = out ?? Buffer.allocUnsafe(plainBytes);
      reader.decryptSpan(layout, span, ciphertext, dst);
      return dst.subarray(0, plainBytes);
    }
    const ct = shared(ciphertext);
    const dst = out && out.buffer instanceof SharedArrayBuffer ? out : allocShared(plainBytes);
    const secrets = internalSecrets(reader);
    const parts = Math.min(this.threads, frames);
    const per = Math.ceil(frames / parts);
    const runs: FrameRun[] = [];
    for (let f = span.first; f <= span.last; f += per) {
      const count = Math.min(per, span.last - f + 1);
      runs.push({
        first: f,
        count,
        finalIndex: layout.frameCount - 1,
        finalContentLength: layout.finalContentLength,
        frameLength: layout.frameLength,
        ct: ct.buffer as SharedArrayBuffer,
        ctOffset: ct.byteOffset + (layout.frameOffset(f) - span.ctStart),
        out: dst.buffer as SharedArrayBuffer,
        outOffset: dst.byteOffset + (f - span.first) * layout.frameLength,
        where: reader.where,
      });
    }
    const jobs = runs.slice(1).map((run, k) => {
      const id = this.nextId++;
      const job: FrameJob = {
        ...run,
        id,
        key: copyOf(secrets.key),
        messageId: copyOf(reader.messageIdBytes),
      };
      const worker = this.workers[k]!;
      // Idle workers are unref'd so an unclosed decryptor never keeps a process alive;
      // a worker with a job in flight must keep the event loop running.
      worker.ref();
      return new Promise<void>((resolve, reject) => {
        this.pending.set(id, { resolve, reject });
        worker.postMessage(job, [job.key, job.messageId]);
      }).finally(() => worker.unref());
    });
    let failure: unknown;
    try {
      // The caller's share, on this thread, with the reader's own frame cipher state.
      runFrames(new FrameCipher(secrets.aead, reader.messageIdBytes, layout.frameLength), runs[0]!);
    } catch (e) {
      failure = e;
    }
    const results = await Promise.allSettled(jobs);
    failure ??= results.find((r): r is PromiseRejectedResult => r.status === 'rejected')?.reason;
    if (failure) {
      dst.fill(0, 0, plainBytes);
      throw failure;
    }
    if (out && dst !== out) {
      dst.copy(out, 0, 0, plainBytes);
      return out.subarray(0, plainBytes);
    }
    return dst.subarray(0, plainBytes);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}

function shared(b: Buffer): Buffer {
  if (b.buffer instanceof SharedArrayBuffer) return b;
  const s = allocShared(b.length);
  b.copy(s);
  return s;
}

function copyOf(b: Buffer): ArrayBuffer {
  const a = new ArrayBuffer(b.length);
  new Uint8Array(a).set(b);
  return a;
}
