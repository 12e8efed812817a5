/** Open-file handles: small positive integers (FUSE's fh; 0 means "none" to fuse-native). */
import { MembraneError } from '../../policy/errors.js';
import { VolumeErrorCode } from './errno.js';

const MAX_FH = 0x7fff_ffff;

export class Handles<T> {
  private readonly map = new Map<number, T>();
  private next = 1;

  add(h: T): number {
    while (this.map.has(this.next)) this.next = this.next >= MAX_FH ? 1 : this.next + 1;
    const fh = this.next;
    this.next = fh >= MAX_FH ? 1 : fh + 1;
    this.map.set(fh, h);
    return fh;
  }

  get(fh: number): T {
    const h = this.map.get(fh);
    if (h === undefined) throw new MembraneError(VolumeErrorCode.BAD_HANDLE, `no open handle ${fh}`);
    return h;
  }

  take(fh: number): T | undefined {
    const h = this.map.get(fh);
    this.map.delete(fh);
    return h;
  }

  values(): IterableIterator<T> {
    return this.map.values();
  }

  get size(): number {
    return this.map.size;
  }
}
