/**
 * Sequential-read detection for one open handle, and the frames to prefetch.
 * Pure state machine (no I/O), so its decisions are table-tested.
 *
 * The kernel already reads ahead 128 KiB and may issue several reads of one
 * stream concurrently, so requests arrive slightly out of order: a read counts
 * as sequential when it starts within `slackBytes` of where the stream was.
 * After two sequential reads the window opens at `initialFrames` and doubles on
 * each refill up to `maxFrames`; a refill is requested once the reader has eaten
 * into the second half of what was already prefetched (so one prefetch is in
 * flight while the app consumes the previous one). A random read resets it.
 */

export interface ReadAheadConfig {
  /** Largest window, in frames. 0 disables read-ahead. */
  maxFrames: number;
  /** First window, in frames (default min(4, maxFrames)). */
  initialFrames?: number;
  /** Distance from the previous end still considered sequential (default 1 MiB). */
  slackBytes?: number;
}

export interface FrameWindow {
  first: number;
  last: number;
}

export class ReadAhead {
  private lastEnd = -1;
  private streak = 0;
  private window: number;
  /** Highest frame index already requested ahead; -1 when none. */
  private horizon = -1;
  private readonly initial: number;
  private readonly slack: number;

  constructor(private readonly cfg: ReadAheadConfig) {
    this.initial = Math.max(1, Math.min(cfg.initialFrames ?? 4, cfg.maxFrames));
    this.window = this.initial;
    this.slack = cfg.slackBytes ?? 1 << 20;
  }

  /**
   * Records a read of plaintext [start, end) of an object with `frameCount`
   * frames of `frameLength` bytes; returns the frames to prefetch, if any.
   */
  next(start: number, end: number, frameLength: number, frameCount: number): FrameWindow | undefined {
    if (this.cfg.maxFrames <= 0 || end <= start) return undefined;
    const sequential =
      this.lastEnd < 0
        ? start === 0
        : start >= this.lastEnd - this.slack && start <= this.lastEnd + this.slack;
    if (!sequential) {
      this.streak = 0;
      this.window = this.initial;
      this.horizon = -1;
      this.lastEnd = end;
      return undefined;
    }
    this.streak++;
    this.lastEnd = Math.max(this.lastEnd, end);
    if (this.streak < 2) return undefined;
    const current = Math.floor((this.lastEnd - 1) / frameLength);
    // Still more than half a window prefetched beyond the reader: nothing to do yet.
    if (this.horizon - current > this.window / 2) return undefined;
    const first = Math.max(this.horizon + 1, current + 1);
    const last = Math.min(frameCount - 1, current + this.window);
    if (first > last) return undefined;
    this.horizon = last;
    this.window = Math.min(this.cfg.maxFrames, this.window * 2);
    return { first, last };
  }
}
