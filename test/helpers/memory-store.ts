/** An in-memory BlobStore for unit tests: counts requests, supports preconditions, lets tests tamper. */
import { createHash } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';
import type { BlobInfo, BlobStore, PutOptions } from '../../proxies/blob-volume/store/types.js';

export class MemoryStore implements BlobStore {
  readonly kind = 'memory';
  readonly description = 'memory:test';
  readonly objects = new Map<string, { data: Buffer; etag: string; at: Date }>();
  reads: { path: string; start: number; end: number }[] = [];
  private version = 0;

  set(path: string, data: Buffer): void {
    this.objects.set(path, {
      data,
      etag: `"${createHash('sha256')
        .update(data)
        .update(String(++this.version))
        .digest('hex')
        .slice(0, 16)}"`,
      at: new Date(),
    });
  }

  info(path: string): BlobInfo {
    const o = this.objects.get(path)!;
    return { path, size: o.data.length, etag: o.etag, lastModified: o.at };
  }

  async *list(prefix = ''): AsyncIterable<BlobInfo> {
    for (const p of [...this.objects.keys()]) if (p.startsWith(prefix)) yield this.info(p);
  }

  async stat(path: string): Promise<BlobInfo | undefined> {
    return this.objects.has(path) ? this.info(path) : undefined;
  }

  async read(path: string, start: number, end: number, opts: { ifMatch?: string } = {}): Promise<Buffer> {
    const o = this.objects.get(path);
    if (!o) throw new MembraneError('STORE_NOT_FOUND', 'object not found', { where: path });
    if (opts.ifMatch && opts.ifMatch !== o.etag)
      throw new MembraneError('STORE_PRECONDITION', 'changed', { where: path });
    this.reads.push({ path, start, end });
    return Buffer.from(o.data.subarray(start, end));
  }

  async put(
    path: string,
    source: AsyncIterable<Uint8Array> | Uint8Array,
    opts: PutOptions = {},
  ): Promise<BlobInfo> {
    const parts: Buffer[] = [];
    if (source instanceof Uint8Array) parts.push(Buffer.from(source));
    else for await (const c of source) parts.push(Buffer.from(c));
    const cur = this.objects.get(path);
    if (opts.ifNoneMatch === '*' && cur)
      throw new MembraneError('STORE_PRECONDITION', 'exists', { where: path });
    if (opts.ifMatch && cur?.etag !== opts.ifMatch)
      throw new MembraneError('STORE_PRECONDITION', 'changed', { where: path });
    this.set(path, Buffer.concat(parts));
    return this.info(path);
  }

  async delete(path: string, opts: { ifMatch?: string } = {}): Promise<void> {
    const cur = this.objects.get(path);
    if (!cur) throw new MembraneError('STORE_NOT_FOUND', 'object not found', { where: path });
    if (opts.ifMatch && cur.etag !== opts.ifMatch)
      throw new MembraneError('STORE_PRECONDITION', 'changed', { where: path });
    this.objects.delete(path);
  }
}

/** Audit sink + metrics that record what they receive. */
export function recorder() {
  const events: { type: string; subject?: string; details?: Record<string, unknown> }[] = [];
  const counts = {
    authFailure: 0,
    cacheHit: 0,
    cacheMiss: 0,
    framesDecrypted: 0,
    bytesDecrypted: 0,
    bytesEncrypted: 0,
    storeRequest: 0,
  };
  return {
    events,
    counts,
    audit: {
      emit: (e: { type: string; subject?: string; details?: Record<string, unknown> }) => void events.push(e),
    },
    metrics: {
      bytesDecrypted(n: number) {
        counts.bytesDecrypted += n;
      },
      framesDecrypted(n: number) {
        counts.framesDecrypted += n;
      },
      cacheHit() {
        counts.cacheHit++;
      },
      cacheMiss() {
        counts.cacheMiss++;
      },
      authFailure() {
        counts.authFailure++;
      },
      storeRequest() {
        counts.storeRequest++;
      },
      bytesEncrypted(n: number) {
        counts.bytesEncrypted += n;
      },
    },
  };
}

/** A MemoryStore offering pinned-version readers (like a store that keeps a descriptor open). */
export class PinnedMemoryStore extends MemoryStore {
  opened = 0;
  closed = 0;
  pinnedReads = 0;

  async openVersion(path: string, etag: string) {
    const o = this.objects.get(path);
    if (!o) throw new MembraneError('STORE_NOT_FOUND', 'object not found', { where: path });
    if (o.etag !== etag) throw new MembraneError('STORE_PRECONDITION', 'changed', { where: path });
    this.opened++;
    const data = o.data; // the version itself, whatever replaces it later
    return {
      read: async (start: number, end: number) => {
        this.pinnedReads++;
        return Buffer.from(data.subarray(start, end));
      },
      close: async () => {
        this.closed++;
      },
    };
  }
}
