/**
 * A bounded pool of staging file descriptors (issue 12, defect 6). Every open sink file
 * has a staging file; with one descriptor each, ~20k files exhausted the process's
 * descriptors (EMFILE): datasource reads, commits and even reading the mount table at
 * teardown failed. Here at most `max` staging files are open at once; the least
 * recently used idle one is closed to make room and reopened by name when needed
 * (staging files keep their name while they live, see staging.ts). A descriptor in
 * use by an I/O call is never closed under it; callers beyond the limit wait.
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

export const DEFAULT_STAGING_FDS = 128;

/** What the pool knows of a staging file: its name. */
export interface PooledFile {
  readonly path: string;
}

export class FdPool {
  /** Open descriptors, least recently used first. */
  private readonly fds = new Map<PooledFile, FileHandle>();
  private readonly busy = new Map<PooledFile, number>();
  private opening = 0;
  /** Files being reopened: one open per file at a time, never two descriptors for one file. */
  private readonly reopening = new Map<PooledFile, Promise<void>>();
  private readonly waiters: (() => void)[] = [];

  constructor(readonly max = DEFAULT_STAGING_FDS) {
    if (!Number.isSafeInteger(max) || max < 1) throw new RangeError('FdPool: max must be a positive integer');
  }

  /** Descriptors open now (for tests and metrics). */
  get size(): number {
    return this.fds.size;
  }

  /** Creates `f` (O_EXCL, 0600) and keeps its descriptor in the pool. */
  async create(f: PooledFile): Promise<void> {
    await this.room();
    this.opening++;
    try {
      this.fds.set(f, await open(f.path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600));
    } finally {
      this.opening--;
    }
  }

  /** Runs `fn` with `f`'s descriptor, reopening it if the pool closed it. */
  async use<T>(f: PooledFile, fn: (fh: FileHandle) => Promise<T>): Promise<T> {
    const fh = await this.acquire(f);
    try {
      return await fn(fh);
    } finally {
      const n = (this.busy.get(f) ?? 1) - 1;
      if (n === 0) this.busy.delete(f);
      else this.busy.set(f, n);
      this.wake();
    }
  }

  /** Closes `f`'s descriptor for good (the caller has no I/O in flight on it). */
  async forget(f: PooledFile): Promise<void> {
    const fh = this.fds.get(f);
    this.fds.delete(f);
    this.busy.delete(f);
    await fh?.close();
    this.wake();
  }

  private async acquire(f: PooledFile): Promise<FileHandle> {
    for (;;) {
      const fh = this.fds.get(f);
      if (fh) {
        this.fds.delete(f); // LRU: move to the end
        this.fds.set(f, fh);
        this.busy.set(f, (this.busy.get(f) ?? 0) + 1);
        return fh;
      }
      const pending = this.reopening.get(f);
      if (pending) {
        // Another I/O call of the same file is reopening it: share that descriptor.
        await pending.catch(() => {});
        continue;
      }
      const reopen = this.reopen(f);
      this.reopening.set(f, reopen);
      try {
        await reopen;
      } finally {
        this.reopening.delete(f);
      }
    }
  }

  private async reopen(f: PooledFile): Promise<void> {
    await this.room();
    this.opening++;
    try {
      // O_NOFOLLOW: the staging directory is ours (0700), but never follow a planted link.
      this.fds.set(f, await open(f.path, constants.O_RDWR | constants.O_NOFOLLOW));
    } finally {
      this.opening--;
    }
  }

  /** Waits until one more descriptor may be opened, closing an idle one if needed. */
  private async room(): Promise<void> {
    for (;;) {
      if (this.fds.size + this.opening < this.max) return;
      for (const [f, fh] of this.fds) {
        if (this.busy.has(f)) continue;
        this.fds.delete(f);
        await fh.close();
        break;
      }
      if (this.fds.size + this.opening < this.max) return;
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  private wake(): void {
    this.waiters.shift()?.();
  }
}
