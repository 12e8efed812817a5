/**
 * Bounded cache of verified plaintext frames, LRU by bytes. Keys name an object
 * VERSION (SourceObject.id, which changes with the ETag) and a frame index, so a
 * replaced object can never be served from frames of its predecessor.
 *
 * Frame buffers are recycled: an evicted frame's buffer goes to a small free
 * list and receives the next decrypted frame of the same size. Allocating a
 * fresh 64 KiB buffer per frame made V8 run a full GC every few MiB of
 * streaming (external memory pressure), which cost more than the decryption.
 * Recycled buffers are overwritten by their next frame; clear() zeroes every
 * buffer, cached or free, when the volume closes.
 *
 * Callers copy out of a returned buffer synchronously (before any await): a
 * later set() may evict and recycle it.
 */

export class FrameCache {
  private readonly entries = new Map<string, Buffer>();
  private used = 0;
  private readonly free = new Map<number, Buffer[]>();
  private freeBytes = 0;
  private readonly maxFreeBytes: number;

  constructor(readonly maxBytes: number) {
    this.maxFreeBytes = Math.min(8 << 20, Math.floor(maxBytes / 4));
  }

  static key(objectId: number, frame: number): string {
    return `${objectId}:${frame}`;
  }

  get bytes(): number {
    return this.used;
  }

  get size(): number {
    return this.entries.size;
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  /** The frame, marked most recently used. */
  get(key: string): Buffer | undefined {
    const b = this.entries.get(key);
    if (b) {
      this.entries.delete(key);
      this.entries.set(key, b);
    }
    return b;
  }

  /** A buffer of exactly `size` bytes for a frame about to be decrypted (contents undefined). */
  allocate(size: number): Buffer {
    const list = this.free.get(size);
    const b = list?.pop();
    if (b) {
      this.freeBytes -= size;
      return b;
    }
    return Buffer.allocUnsafeSlow(size);
  }

  /** Gives back a buffer that will not be cached (e.g. its frame failed and was zeroed). */
  recycle(b: Buffer): void {
    if (this.freeBytes + b.length > this.maxFreeBytes) {
      b.fill(0);
      return;
    }
    const list = this.free.get(b.length) ?? [];
    this.free.set(b.length, list);
    list.push(b);
    this.freeBytes += b.length;
  }

  /** Inserts (or replaces) a frame; frames larger than the whole cache are not kept. */
  set(key: string, frame: Buffer): void {
    this.delete(key);
    if (frame.length > this.maxBytes) return;
    this.entries.set(key, frame);
    this.used += frame.length;
    for (const [k, b] of this.entries) {
      if (this.used <= this.maxBytes) break;
      this.entries.delete(k);
      this.used -= b.length;
      this.recycle(b);
    }
  }

  delete(key: string): void {
    const b = this.entries.get(key);
    if (!b) return;
    this.entries.delete(key);
    this.used -= b.length;
    this.recycle(b);
  }

  /** Drops every frame of one object version. */
  dropObject(objectId: number): void {
    const prefix = `${objectId}:`;
    for (const k of [...this.entries.keys()]) if (k.startsWith(prefix)) this.delete(k);
  }

  /** Drops and zeroes everything, free buffers included. */
  clear(): void {
    for (const b of this.entries.values()) b.fill(0);
    for (const list of this.free.values()) for (const b of list) b.fill(0);
    this.entries.clear();
    this.free.clear();
    this.used = 0;
    this.freeBytes = 0;
  }
}
