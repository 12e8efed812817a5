/**
 * Encrypted staging of one datasink file while the app writes it. Random-access
 * read/write/truncate over fixed-size blocks; blocks being worked on stay in
 * memory (write-back, bounded), every block that reaches the disk is sealed by a
 * BlockCipher under an ephemeral key that dies with the process.
 *
 * The file keeps its name (0600, in the 0700 staging directory) until close(), so
 * the shared descriptor pool (staging-fds.ts) can close an idle file's descriptor
 * and reopen it (issue 12, defect 6: one descriptor per file exhausted EMFILE). A
 * crash leaves only sealed noise under a dead key, removed at the next mount
 * (volume.ts sweepStaging); blocks are authenticated, so a tampered file fails
 * STAGING_AUTH rather than feeding the commit.
 *
 * Layout and offsets: blocks.ts. Per-block metadata (nonce counter and content
 * length of the sealed copy on disk) lives in memory only; a slot whose metadata
 * is absent reads as zeros (a hole).
 *
 * Not safe for concurrent use: the owner (SinkFile) serialises every call.
 */
import { randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { blockContent, pieces, slotOffset } from './blocks.js';
import type { BlockCipher } from './staging-cipher.js';
import { FdPool } from './staging-fds.js';

/** Stagings created without a pool share this one. */
let defaultPool: FdPool | undefined;

export interface StagingOptions {
  dir: string;
  cipher: BlockCipher;
  /** Plaintext bytes per block (default 64 KiB). */
  blockSize?: number;
  /** Blocks kept in memory (default 16); the least recently used dirty block is sealed to disk beyond that. */
  maxResidentBlocks?: number;
  /** Descriptor pool (a sink shares one across its files). */
  fds?: FdPool;
}

interface Sealed {
  counter: number;
  length: number;
}

export const STAGING_PREFIX = '.membrane-staging-';
const BATCH_BLOCKS = 16;
const MAX_IN_FLIGHT = 8;

export class Staging {
  private closed = false;
  private readonly file: { readonly path: string };
  private readonly fds: FdPool;
  private readonly blockSize: number;
  private readonly maxResident: number;
  private readonly tag: number;
  /** Blocks in memory, LRU order; each a full block of plaintext, zero beyond its content. */
  private readonly resident = new Map<number, Buffer>();
  private readonly dirty = new Set<number>();
  /** Blocks sealed on disk. */
  private readonly sealed = new Map<number, Sealed>();
  /**
   * Slot writes still in flight (write-behind: an evicted block is sealed at once,
   * its disk write overlaps the app's next writes). Reading a slot waits for its
   * write; at most MAX_IN_FLIGHT are outstanding; the first failure is rethrown.
   */
  private readonly inFlight = new Map<number, Promise<void>>();
  private writeError: unknown;
  private _size = 0;

  private constructor(
    path: string,
    private readonly cipher: BlockCipher,
    opts: StagingOptions,
    fds: FdPool,
  ) {
    this.file = { path };
    this.fds = fds;
    this.blockSize = opts.blockSize ?? 64 * 1024;
    this.maxResident = Math.max(2, opts.maxResidentBlocks ?? 16);
    this.tag = cipher.tagLength;
  }

  static async create(opts: StagingOptions): Promise<Staging> {
    const path = join(opts.dir, STAGING_PREFIX + randomBytes(12).toString('hex'));
    if (!opts.fds && !defaultPool) defaultPool = new FdPool();
    const fds = opts.fds ?? defaultPool!;
    const s = new Staging(path, opts.cipher, opts, fds);
    await fds.create(s.file);
    return s;
  }

  get size(): number {
    return this._size;
  }

  /** Bytes of memory held in resident blocks (for tests and accounting). */
  get residentBytes(): number {
    return this.resident.size * this.blockSize;
  }

  async write(pos: number, src: Uint8Array): Promise<void> {
    if (src.length === 0) return; // POSIX: a zero-byte write changes nothing, not even the size
    const end = pos + src.length;
    for (const p of pieces(pos, src.length, this.blockSize)) {
      const whole = p.blockOffset === 0 && p.length === this.blockSize;
      const block = await this.load(p.index, !whole);
      block.set(src.subarray(p.offset, p.offset + p.length), p.blockOffset);
      this.dirty.add(p.index);
    }
    if (end > this._size) this._size = end;
    await this.shrinkResident();
  }

  /** Reads up to dst.length bytes at `pos`; returns the count (0 at or past the end). */
  async read(pos: number, dst: Uint8Array): Promise<number> {
    const n = Math.max(0, Math.min(dst.length, this._size - pos));
    for (const p of pieces(pos, n, this.blockSize)) {
      const block = await this.load(p.index, true);
      dst.set(block.subarray(p.blockOffset, p.blockOffset + p.length), p.offset);
    }
    await this.shrinkResident();
    return n;
  }

  async truncate(size: number): Promise<void> {
    if (size < this._size) {
      const keep = Math.ceil(size / this.blockSize);
      for (const i of [...this.resident.keys()]) if (i >= keep) this.drop(i);
      for (const i of [...this.sealed.keys()]) if (i >= keep) this.sealed.delete(i);
      const tail = size % this.blockSize;
      if (tail !== 0) {
        // The block holding the new end must read zeros past it if the file grows again.
        const last = Math.floor(size / this.blockSize);
        const block = await this.load(last, true);
        block.fill(0, tail);
        this.dirty.add(last);
      }
    }
    this._size = size;
    await this.shrinkResident();
  }

  /** The whole plaintext in order, in chunks of up to `chunkBytes` (for commits). */
  async *chunks(chunkBytes = 1 << 20): AsyncGenerator<Buffer> {
    const B = this.blockSize;
    const per = Math.max(1, Math.floor(chunkBytes / B));
    const count = Math.ceil(this._size / B);
    this.throwIfFailed();
    for (let first = 0; first < count; first += per) {
      const last = Math.min(count, first + per) - 1;
      const out = Buffer.alloc(Math.min(this._size, (last + 1) * B) - first * B);
      await this.readBlocksInto(first, last, out);
      yield out;
    }
  }

  /** Seals every dirty block to disk and frees the memory of resident blocks. */
  async settle(): Promise<void> {
    for (const i of [...this.resident.keys()]) await this.evict(i);
    await this.drain();
  }

  /** Waits for every slot write in flight; rethrows the first that failed. */
  private async drain(): Promise<void> {
    await Promise.all(this.inFlight.values());
    this.throwIfFailed();
  }

  private throwIfFailed(): void {
    if (this.writeError !== undefined) throw this.writeError;
  }

  async close(): Promise<void> {
    await Promise.allSettled(this.inFlight.values());
    for (const b of this.resident.values()) b.fill(0);
    this.resident.clear();
    this.dirty.clear();
    this.sealed.clear();
    this.cipher.destroy();
    if (this.closed) return;
    this.closed = true;
    await this.fds.forget(this.file);
    await unlink(this.file.path).catch(() => {});
  }

  // ---- internals ----

  /** Runs one I/O call with this file's descriptor from the pool. */
  private io<T>(fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(new Error('staging file is closed'));
    return this.fds.use(this.file, fn);
  }

  /** A resident block, loaded from disk when `needContent` and it has a sealed copy. */
  private async load(index: number, needContent: boolean): Promise<Buffer> {
    const hit = this.resident.get(index);
    if (hit) {
      this.resident.delete(index);
      this.resident.set(index, hit);
      return hit;
    }
    const block = Buffer.alloc(this.blockSize);
    const s = this.sealed.get(index);
    if (needContent && s) await this.readSealed(index, s, block);
    this.resident.set(index, block);
    return block;
  }

  private async readSealed(index: number, s: Sealed, out: Buffer): Promise<void> {
    await this.inFlight.get(index);
    this.throwIfFailed();
    const slot = Buffer.allocUnsafe(this.tag + s.length);
    await this.io((fh) => readFully(fh, slot, slotOffset(index, this.blockSize, this.tag)));
    this.cipher.open(index, s.counter, slot, out);
  }

  /** Blocks first..last into `out` (content only), batching disk reads of adjacent sealed blocks. */
  private async readBlocksInto(first: number, last: number, out: Buffer): Promise<void> {
    const B = this.blockSize;
    const stride = B + this.tag;
    for (let i = first; i <= last; ) {
      const at = (i - first) * B;
      const want = blockContent(i, this._size, B);
      const r = this.resident.get(i);
      if (r) {
        r.copy(out, at, 0, want);
        i++;
        continue;
      }
      if (!this.sealed.has(i)) {
        out.fill(0, at, at + want); // hole
        i++;
        continue;
      }
      // A run of adjacent blocks sealed on disk and not resident: one read.
      let j = i;
      while (j < last && j + 1 - i < BATCH_BLOCKS && !this.resident.has(j + 1) && this.sealed.has(j + 1)) j++;
      // The last slot of the run may be shorter than the stride (only tag + content are written).
      for (let k = i; k <= j; k++) await this.inFlight.get(k);
      this.throwIfFailed();
      const raw = Buffer.allocUnsafe((j - i) * stride + this.tag + this.sealed.get(j)!.length);
      await this.io((fh) => readFully(fh, raw, slotOffset(i, B, this.tag)));
      const block = Buffer.alloc(B);
      for (let k = i; k <= j; k++) {
        const s = this.sealed.get(k)!;
        const off = (k - i) * stride;
        block.fill(0);
        this.cipher.open(k, s.counter, raw.subarray(off, off + this.tag + s.length), block);
        block.copy(out, (k - first) * B, 0, blockContent(k, this._size, B));
      }
      block.fill(0);
      i = j + 1;
    }
  }

  private async shrinkResident(): Promise<void> {
    while (this.resident.size > this.maxResident) {
      const oldest = this.resident.keys().next().value as number;
      await this.evict(oldest);
    }
  }

  private async evict(index: number): Promise<void> {
    const block = this.resident.get(index);
    if (!block) return;
    if (this.dirty.has(index)) {
      const length = blockContent(index, this._size, this.blockSize);
      if (length > 0) {
        const slot = Buffer.allocUnsafe(this.tag + length);
        const counter = this.cipher.seal(index, block.subarray(0, length), slot);
        this.sealed.set(index, { counter, length });
        await this.inFlight.get(index); // an older write of this slot must not land after this one
        while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight.values());
        this.throwIfFailed();
        const w = this.io((fh) => writeFully(fh, slot, slotOffset(index, this.blockSize, this.tag))).then(
          () => {
            if (this.inFlight.get(index) === w) this.inFlight.delete(index);
          },
          (e: unknown) => {
            if (this.inFlight.get(index) === w) this.inFlight.delete(index);
            this.writeError ??= e;
          },
        );
        this.inFlight.set(index, w);
      } else this.sealed.delete(index);
    }
    this.drop(index);
  }

  private drop(index: number): void {
    const block = this.resident.get(index);
    block?.fill(0);
    this.resident.delete(index);
    this.dirty.delete(index);
  }
}

async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) throw new Error(`staging file ends early at ${position + got}`);
    got += bytesRead;
  }
}

async function writeFully(fh: FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    done += bytesWritten;
  }
}
