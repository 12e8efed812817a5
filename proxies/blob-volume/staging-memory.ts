/**
 * The staging-memory budget of one datasink (issue 12, defect 6). Each open sink file
 * keeps up to 16 blocks of plaintext in memory (staging.ts); with no global cap, 600
 * open files held 556 MiB. Here every block a sink's files hold in memory is accounted
 * against one budget, from the moment it is reserved until it is gone: a resident block,
 * a block being loaded, and a sealed block waiting for its disk write (write-behind)
 * all count, so the accounted bytes bound what staging really holds.
 *
 * When a reservation does not fit, the least recently used resident block of ANY file
 * is evicted — sealed and written back to its staging file, exactly as a file's own
 * eviction does — until it fits; if nothing is evictable (every accounted block is
 * being loaded or written), the reservation waits for one to finish. It never fails
 * for lack of memory: blocks being loaded or written always finish (they wait only for
 * I/O, never for the budget), so a waiting reservation always makes progress.
 * Reservations are served in arrival order.
 */

/** A staging file as the budget sees it: something that can give a block back. */
export interface BlockOwner {
  /**
   * Seals block `index` to disk (or drops it when clean) synchronously, calling
   * `untrack` at once, then `release` (dropped) or `startWrite` and, once the disk
   * write settles, `endWrite`.
   */
  evictForBudget(index: number): void;
}

/** One block in memory, evictable by the budget while tracked. */
export class ResidentBlock {
  constructor(
    readonly owner: BlockOwner,
    readonly index: number,
  ) {}
}

export interface StagingMemoryStats {
  /** The budget. */
  limitBytes: number;
  /** Accounted now: resident blocks, blocks being loaded, sealed blocks waiting for their write. */
  usedBytes: number;
  /** Highest `usedBytes` seen. */
  peakBytes: number;
  /** Blocks resident (evictable) now. */
  residentBlocks: number;
  /** Blocks the budget evicted to make room (any file's). */
  evictions: number;
}

export const DEFAULT_STAGING_MEMORY = 64 << 20;

export class StagingMemory {
  private used = 0;
  /** Part of `used` held by sealed blocks waiting for their disk write: memory on its way out. */
  private writing = 0;
  private peak = 0;
  private evictions = 0;
  /** Resident blocks, least recently used first (a Set keeps insertion order). */
  private readonly lru = new Set<ResidentBlock>();
  /** Reservations wait here, in order; each one waits for the one before it. */
  private queue: Promise<void> = Promise.resolve();
  private queued = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly limit: number = DEFAULT_STAGING_MEMORY) {
    if (!(limit > 0)) throw new RangeError('StagingMemory: limit must be positive');
  }

  get stats(): StagingMemoryStats {
    return {
      limitBytes: this.limit,
      usedBytes: this.used,
      peakBytes: this.peak,
      residentBlocks: this.lru.size,
      evictions: this.evictions,
    };
  }

  /** Accounts `bytes` more, evicting other blocks first if they do not fit. */
  reserve(bytes: number): Promise<void> {
    if (bytes > this.limit)
      return Promise.reject(
        new RangeError(`a staging block (${bytes} bytes) exceeds the staging memory budget`),
      );
    if (this.queued === 0 && this.used + bytes <= this.limit) {
      this.account(bytes);
      return Promise.resolve();
    }
    this.queued++;
    const turn = this.queue.then(() => this.take(bytes));
    this.queue = turn.finally(() => {
      this.queued--;
    });
    return turn;
  }

  /** `b` (reserved) is now resident: evictable, most recently used. */
  track(b: ResidentBlock): void {
    this.lru.add(b);
    this.wake(); // a waiting reservation may evict it
  }

  /** `b` was used: it becomes the most recently used. */
  touch(b: ResidentBlock): void {
    if (this.lru.delete(b)) this.lru.add(b);
  }

  /** `b` is no longer resident (its bytes stay accounted until release()). */
  untrack(b: ResidentBlock): void {
    this.lru.delete(b);
  }

  /** An untracked block's `bytes` are waiting for their disk write (still accounted). */
  startWrite(bytes: number): void {
    this.writing += bytes;
  }

  /** The disk write of `bytes` settled: they are free. */
  endWrite(bytes: number): void {
    this.writing -= bytes;
    this.release(bytes);
  }

  /** `bytes` reserved earlier are free again. */
  release(bytes: number): void {
    this.used -= bytes;
    this.wake();
  }

  private wake(): void {
    for (const w of this.waiting.splice(0)) w();
  }

  private async take(bytes: number): Promise<void> {
    while (this.used + bytes > this.limit) {
      const victim = this.lru.values().next().value;
      // Evict only until what is already on its way to disk makes room: evicting more
      // would empty every file's blocks for the sake of one reservation.
      if (victim && this.used - this.writing + bytes > this.limit) {
        this.lru.delete(victim); // even if the owner misbehaves, never pick it twice
        this.evictions++;
        victim.owner.evictForBudget(victim.index);
        continue;
      }
      // Enough is being written back, or every accounted block is being loaded or written:
      // wait until a write settles or a block becomes resident (evictable).
      await new Promise<void>((r) => this.waiting.push(r));
    }
    this.account(bytes);
  }

  private account(bytes: number): void {
    this.used += bytes;
    if (this.used > this.peak) this.peak = this.used;
  }
}
