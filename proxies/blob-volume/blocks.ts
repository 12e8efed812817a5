/**
 * Offset arithmetic of the staging file, in one place (gocryptfs style): a byte
 * range of the plaintext splits into per-block pieces, and block i's sealed slot
 * lives at a fixed stride. Pure and exhaustively tested.
 *
 *   slot i = [ tag (T bytes) | ciphertext (len_i <= B bytes) ]  at offset i * (B + T)
 */

export interface Piece {
  /** Block index. */
  index: number;
  /** Offset inside the block. */
  blockOffset: number;
  /** Offset inside the caller's buffer. */
  offset: number;
  length: number;
}

/** Pieces of plaintext [pos, pos + length) cut at block boundaries. */
export function pieces(pos: number, length: number, blockSize: number): Piece[] {
  if (!Number.isSafeInteger(pos) || !Number.isSafeInteger(length) || pos < 0 || length < 0) {
    throw new RangeError(`invalid range at ${pos} length ${length}`);
  }
  const out: Piece[] = [];
  let done = 0;
  while (done < length) {
    const at = pos + done;
    const index = Math.floor(at / blockSize);
    const blockOffset = at - index * blockSize;
    const n = Math.min(blockSize - blockOffset, length - done);
    out.push({ index, blockOffset, offset: done, length: n });
    done += n;
  }
  return out;
}

/** Blocks needed to hold `size` bytes. */
export function blockCount(size: number, blockSize: number): number {
  return Math.ceil(size / blockSize);
}

/** Content bytes of block `index` in a file of `size` bytes (0 beyond the end). */
export function blockContent(index: number, size: number, blockSize: number): number {
  return Math.max(0, Math.min(blockSize, size - index * blockSize));
}

/** File offset of block `index`'s slot. */
export function slotOffset(index: number, blockSize: number, tagLength: number): number {
  return index * (blockSize + tagLength);
}
