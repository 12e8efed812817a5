/**
 * The read path: plaintext [pos, pos + len) of a source object into the caller's
 * buffer (FUSE's own buffer).
 *
 *  1. Frames already in the frame cache are copied out.
 *  2. Frames being fetched by a prefetch are awaited, then copied.
 *  3. Each run of remaining frames is fetched with ONE ranged store read and
 *     verified; frames wholly inside the request are decrypted straight into the
 *     caller's buffer (no copy, not cached); the partial frames at the edges are
 *     decrypted into buffers that go to the frame cache (the next small read of
 *     the same frame is a hit).
 *  4. Independently, the handle's ReadAhead may ask for frames beyond the request:
 *     they are fetched with one coalesced ranged read in the background and land
 *     in the cache, where the next sequential reads find them.
 *
 * Any verification failure marks the object version failed (reported once,
 * audited) and every read of it fails from then on: nothing of an object that
 * failed authentication is returned. Reads pin the version with If-Match, so
 * frames of two versions are never mixed.
 */
import { isMembraneError, type MembraneError } from '../../policy/errors.js';
import { spanLength } from './codec.js';
import { isIntegrityError } from './errno.js';
import { FrameCache } from './frame-cache.js';
import type { VolumeMetrics } from './hooks.js';
import { changed, type SourceObject, type SourceObjects } from './objects.js';
import type { ReadAhead } from './read-ahead.js';

export class SourceReader {
  private readonly inflight = new Map<string, Promise<void>>();

  constructor(
    private readonly objects: SourceObjects,
    private readonly cache: FrameCache,
    private readonly metrics: VolumeMetrics,
  ) {}

  /** Reads into buf[0, len); returns the byte count (0 at end of object). */
  async read(
    obj: SourceObject,
    ra: ReadAhead | undefined,
    buf: Uint8Array,
    len: number,
    pos: number,
  ): Promise<number> {
    if (obj.failure) throw obj.failure;
    const c = obj.codec;
    const end = Math.min(pos + len, c.size);
    if (pos >= end) return 0;
    const F = c.frameLength;
    const first = Math.floor(pos / F);
    const last = Math.floor((end - 1) / F);

    const ahead = ra?.next(pos, end, F, c.frameCount);
    if (ahead) this.prefetch(obj, Math.max(ahead.first, last + 1), ahead.last);

    for (let i = first; i <= last; ) {
      if (this.copyCached(obj, i, buf, pos, end)) {
        i++;
        continue;
      }
      const pending = this.inflight.get(FrameCache.key(obj.id, i));
      if (pending) {
        await pending.catch(() => {}); // its failure, if any, is reported by whoever fetched
        if (obj.failure) throw obj.failure;
        if (this.copyCached(obj, i, buf, pos, end)) {
          i++;
          continue;
        }
      }
      let j = i;
      while (
        j < last &&
        !this.cache.has(FrameCache.key(obj.id, j + 1)) &&
        !this.inflight.has(FrameCache.key(obj.id, j + 1))
      )
        j++;
      await this.fetchInto(obj, i, j, buf, pos, end);
      i = j + 1;
    }
    // A concurrent read may have found this version bad meanwhile: then nothing of it goes out.
    if (obj.failure) throw obj.failure;
    return end - pos;
  }

  /** Copies the part of cached frame i inside [pos, end) into buf; false on a miss. Counts a cache hit. */
  private copyCached(obj: SourceObject, i: number, buf: Uint8Array, pos: number, end: number): boolean {
    if (!this.copyFromCache(obj, i, buf, pos, end)) return false;
    this.metrics.cacheHit();
    return true;
  }

  /** The copy alone: also used right after a miss was decoded into the cache, which is no hit. */
  private copyFromCache(obj: SourceObject, i: number, buf: Uint8Array, pos: number, end: number): boolean {
    const frame = this.cache.get(FrameCache.key(obj.id, i));
    if (!frame) return false;
    const F = obj.codec.frameLength;
    const from = Math.max(pos, i * F);
    const to = Math.min(end, i * F + frame.length);
    buf.set(frame.subarray(from - i * F, to - i * F), from - pos);
    return true;
  }

  /** Fetches frames a..b with one read; full frames go straight into buf, edge frames via the cache. */
  private async fetchInto(
    obj: SourceObject,
    a: number,
    b: number,
    buf: Uint8Array,
    pos: number,
    end: number,
  ): Promise<void> {
    const c = obj.codec;
    const F = c.frameLength;
    for (let i = a; i <= b; i++) this.metrics.cacheMiss();
    const ct = await this.fetch(obj, a, b);
    const base = c.ctRange(a, b).start;
    // Frames wholly inside [pos, end): the contiguous middle of the run.
    let m0 = a;
    let m1 = b;
    if (m0 * F < pos) m0++;
    if (m1 * F + c.contentLength(m1) > end) m1--;
    try {
      for (let i = a; i <= b; i++) {
        if (i >= m0 && i <= m1) {
          const r = c.ctRange(m0, m1);
          c.decode(
            m0,
            m1,
            ct.subarray(r.start - base, r.end - base),
            buf.subarray(m0 * F - pos, m0 * F - pos + spanLength(c, m0, m1)),
          );
          this.counted(obj, m1 - m0 + 1, spanLength(c, m0, m1));
          i = m1;
          continue;
        }
        this.decodeToCache(obj, i, ct, base);
        this.copyFromCache(obj, i, buf, pos, end);
      }
    } catch (e) {
      throw this.failed(obj, e);
    }
  }

  /** Background fetch of frames a..b (those not cached or in flight) into the cache. */
  private prefetch(obj: SourceObject, a: number, b: number): void {
    if (obj.failure) return;
    while (a <= b && this.present(obj, a)) a++;
    while (b >= a && this.present(obj, b)) b--;
    if (a > b) return;
    const keys: string[] = [];
    for (let i = a; i <= b; i++) keys.push(FrameCache.key(obj.id, i));
    if (!obj.tryRetain()) return;
    const work = (async () => {
      const c = obj.codec;
      const ct = await this.fetch(obj, a, b);
      const base = c.ctRange(a, b).start;
      try {
        for (let i = a; i <= b; i++) this.decodeToCache(obj, i, ct, base);
      } catch (e) {
        throw this.failed(obj, e);
      }
    })();
    for (const k of keys) this.inflight.set(k, work);
    work
      .catch(() => {}) // a demand read of the same frames fetches again and reports
      .finally(() => {
        for (const k of keys) if (this.inflight.get(k) === work) this.inflight.delete(k);
        obj.release();
      });
  }

  /** Verifies frame i (its bytes inside `ct`, which starts at stored offset `base`) into a cached buffer. */
  private decodeToCache(obj: SourceObject, i: number, ct: Buffer, base: number): void {
    const c = obj.codec;
    const r = c.ctRange(i, i);
    const frame = this.cache.allocate(c.contentLength(i));
    try {
      c.decode(i, i, ct.subarray(r.start - base, r.end - base), frame);
    } catch (e) {
      this.cache.recycle(frame); // zeroed by decode
      throw e;
    }
    this.counted(obj, 1, frame.length);
    this.cache.set(FrameCache.key(obj.id, i), frame);
  }

  private present(obj: SourceObject, i: number): boolean {
    const k = FrameCache.key(obj.id, i);
    return this.cache.has(k) || this.inflight.has(k);
  }

  private async fetch(obj: SourceObject, a: number, b: number): Promise<Buffer> {
    const { start, end } = obj.codec.ctRange(a, b);
    try {
      return await obj.fetch(start, end);
    } catch (e) {
      // The object was replaced or removed under an open version: that version is gone.
      if (isMembraneError(e, 'STORE_PRECONDITION') || isMembraneError(e, 'STORE_NOT_FOUND')) {
        throw this.failed(obj, changed(obj.path));
      }
      throw e;
    }
  }

  private failed(obj: SourceObject, e: unknown): unknown {
    if (isIntegrityError(e)) this.objects.fail(obj, e as MembraneError);
    return obj.failure ?? e;
  }

  private counted(obj: SourceObject, frames: number, bytes: number): void {
    if (!obj.codec.sealed) return;
    this.metrics.framesDecrypted(frames);
    this.metrics.bytesDecrypted(bytes);
  }
}
