/**
 * One file created in a datasink during this mount: its encrypted staging, its
 * current name, and where its last commit lives. Every operation on it runs under
 * its mutex, commits included, so a commit sees a consistent snapshot and writes
 * from several handles never interleave inside a block.
 */
import { Mutex } from './mutex.js';
import type { Staging } from './staging.js';

export class SinkFile {
  readonly lock = new Mutex();
  /** Changed since the last commit (a new file is dirty: even an empty file is committed). */
  dirty = true;
  /** Object path of this file's last committed version, if any. */
  committedPath: string | undefined;
  /** Open handles. */
  handles = 0;
  /** Unlinked or replaced: never committed again; staging closed with the last handle. */
  detached = false;
  mtime = new Date();

  constructor(
    public path: string,
    readonly staging: Staging,
  ) {}

  get size(): number {
    return this.staging.size;
  }

  touch(): void {
    this.dirty = true;
    this.mtime = new Date();
  }
}
