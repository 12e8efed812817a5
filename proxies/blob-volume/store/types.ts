/**
 * Blob stores behind one interface: `fs` (a directory; the embedded default) and
 * `azure-blob` (REST). The blob volume sees only this. Paths are '/'-separated,
 * relative to the store root (container + prefix), never starting with '/'.
 *
 * Consistency contract every implementation keeps:
 *  - put() is atomic: readers see the previous object or the new one, never a mix
 *    or a prefix (fs: temp file + rename; Azure: staged blocks + Put Block List).
 *  - ETags change whenever content changes; preconditions turn races into
 *    STORE_PRECONDITION errors instead of silent overwrites.
 */
export interface BlobInfo {
  readonly path: string;
  readonly size: number;
  readonly etag: string;
  readonly lastModified: Date;
}

export interface PutOptions {
  /** '*': fail if the object exists (write-once datasinks). */
  ifNoneMatch?: '*';
  /** Fail unless the current ETag matches. */
  ifMatch?: string;
  /** Plaintext-free metadata hint for sizes known up front (lets Azure pick single-shot upload). */
  sizeHint?: number;
}

export interface BlobStore {
  /** 'fs' | 'azure-blob'. */
  readonly kind: string;
  /** Human description for logs and errors: no credentials, no SAS. */
  readonly description: string;
  /** Every object under `prefix` (recursive), in no particular order. */
  list(prefix?: string): AsyncIterable<BlobInfo>;
  stat(path: string): Promise<BlobInfo | undefined>;
  /** Bytes [start, end) (shorter only at the end of the object). `ifMatch` pins the version read. */
  read(path: string, start: number, end: number, opts?: { ifMatch?: string }): Promise<Buffer>;
  put(path: string, source: AsyncIterable<Uint8Array> | Uint8Array, opts?: PutOptions): Promise<BlobInfo>;
  delete(path: string, opts?: { ifMatch?: string }): Promise<void>;
  /** Releases connections (optional: stores without pooled resources omit it). */
  close?(): Promise<void>;
}

/** Error codes (MembraneError.code) stores throw. */
export const StoreErrorCode = {
  NOT_FOUND: 'STORE_NOT_FOUND',
  PRECONDITION: 'STORE_PRECONDITION',
  AUTH: 'STORE_AUTH',
  IO: 'STORE_IO',
  INVALID_PATH: 'STORE_INVALID_PATH',
  /** The store configuration itself is wrong (URL, container, SAS placed in the URL, ...). */
  CONFIG: 'STORE_CONFIG',
} as const;
