/**
 * Progress on stderr for long tree operations: files done / total and bytes
 * done / total. Shown when stderr is a terminal (redrawn in place) or when
 * --progress asks for it (one line per update, for logs). Throttled so a tree
 * of small files does not spend its time printing.
 */
const INTERVAL_MS = 500;

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}

export class Progress {
  private readonly enabled: boolean;
  private readonly tty: boolean;
  private filesDone = 0;
  private bytesDone = 0;
  private last = 0;
  private drawn = false;

  constructor(
    private readonly verb: string,
    private readonly totalFiles: number,
    private readonly totalBytes: number,
    forced: boolean,
  ) {
    this.tty = process.stderr.isTTY === true;
    this.enabled = forced || this.tty;
  }

  bytes(n: number): void {
    this.bytesDone += n;
    this.maybeDraw(false);
  }

  fileDone(): void {
    this.filesDone++;
    this.maybeDraw(this.filesDone === this.totalFiles);
  }

  /** Ends the in-place line so later output starts on a fresh one. */
  finish(): void {
    if (this.enabled && this.tty && this.drawn) process.stderr.write('\n');
    this.drawn = false;
  }

  private maybeDraw(force: boolean): void {
    if (!this.enabled) return;
    const now = Date.now();
    if (!force && now - this.last < INTERVAL_MS) return;
    this.last = now;
    const line = `${this.verb}: ${this.filesDone}/${this.totalFiles} files, ${formatBytes(this.bytesDone)} / ${formatBytes(this.totalBytes)}`;
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${line}`);
      this.drawn = true;
    } else process.stderr.write(`${line}\n`);
  }
}
