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

/**
 * Names a store can hold (issue 12, defect 3). A sink refuses longer names when the
 * app creates them (ENAMETOOLONG) instead of failing the commit at close or unmount.
 */
export interface NameLimits {
  /** Longest object path, in UTF-8 bytes. */
  readonly pathBytes: number;
  /** Longest path segment, in UTF-8 bytes. */
  readonly segmentBytes: number;
  /** Most segments in one path. */
  readonly segments: number;
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
  /** What names this store can hold; absent = no limits beyond storePath(). */
  readonly limits?: NameLimits;
  /**
   * Checks that the store itself exists and is usable (fs: the root is a directory).
   * `mustExist` false: a missing store is fine (a datasink creates it on first commit).
   */
  probe?(mustExist: boolean): Promise<void>;
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
  /** A symbolic link inside a store: never followed (objects could land outside the store). */
  LINK: 'STORE_LINK',
  /** The store configuration itself is wrong (URL, container, SAS placed in the URL, ...). */
  CONFIG: 'STORE_CONFIG',
} as const;
