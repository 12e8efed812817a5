/**
 * Building blocks of the aead suite's measurements, run inside its child
 * processes (bench/aead-child.ts): the hot core through its public API only,
 * exactly as a datasource proxy uses it, and the references (the SDK, a single
 * node:crypto call) on the same data.
 */
import { createCipheriv, createDecipheriv, randomBytes, randomFillSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { AlgorithmSuiteIdentifier, buildClient, CommitmentPolicy } from '@aws-crypto/client-node';
import {
  allocShared,
  contextFor,
  decryptIterable,
  encryptIterable,
  type FrameLayout,
  type Keyring,
  type ObjectBinding,
  ObjectReader,
  type ParallelDecryptor,
  sealBuffer,
} from '../proxies/core/index.js';
import type { Measured } from './measure.js';

export const BINDING: ObjectBinding = { datasource: 'bench', path: 'aead/object.bin' };
/** Read/write size of the streaming cases: a typical storage GET/PUT chunk, not frame-aligned. */
export const STREAM_CHUNK = 1024 * 1024;

/** `size` bytes of incompressible data (1 MiB of random bytes, repeated: AES does not care). */
export function testData(size: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  const block = randomFillSync(Buffer.allocUnsafe(Math.min(size, 1024 * 1024)));
  for (let o = 0; o < size; o += block.length) block.copy(buf, o, 0, Math.min(block.length, size - o));
  return buf;
}

export function chunksOf(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < buf.length; o += size) out.push(buf.subarray(o, Math.min(o + size, buf.length)));
  return out;
}

export interface SealedObject {
  readonly frameLength: number;
  readonly plaintext: Buffer;
  readonly ciphertext: Buffer;
  readonly reader: ObjectReader;
  readonly layout: FrameLayout;
}

export async function sealObject(
  keyring: Keyring,
  plaintext: Buffer,
  frameLength: number,
): Promise<SealedObject> {
  const ciphertext = await sealBuffer(plaintext, { keyring, binding: BINDING, frameLength });
  const reader = await ObjectReader.fromHeaderBytes(ciphertext, { keyring, expect: BINDING });
  return { frameLength, plaintext, ciphertext, reader, layout: reader.layout(ciphertext.length) };
}

function mustEqual(got: Buffer, want: Buffer, what: string): void {
  if (!got.equals(want)) throw new Error(`bench self-check failed: ${what} produced wrong plaintext`);
}

/** A case to time (see measureInterleaved) plus a self-check to run after timing. */
export interface CoreCase extends Measured {
  check(): void;
}

/** Random-access path, one thread: every frame by index into a preallocated buffer. */
export function decryptSpanCase(obj: SealedObject, out: Buffer): CoreCase {
  const { reader, layout, ciphertext } = obj;
  const body = ciphertext.subarray(layout.headerLength);
  const dst = out.subarray(0, layout.plaintextSize);
  return {
    bytes: layout.plaintextSize,
    fn: () => reader.decryptSpan(layout, layout.all(), body, dst),
    check: () => mustEqual(dst, obj.plaintext, 'decryptSpan'),
  };
}

/** Random-access path across worker threads, shared input and output buffers. */
export function parallelCase(
  obj: SealedObject,
  pd: ParallelDecryptor,
  sharedCt: Buffer,
  sharedOut: Buffer,
): CoreCase {
  const { reader, layout, ciphertext } = obj;
  ciphertext.copy(sharedCt);
  const body = sharedCt.subarray(layout.headerLength, ciphertext.length);
  const dst = sharedOut.subarray(0, layout.plaintextSize);
  return {
    bytes: layout.plaintextSize,
    fn: () => pd.decryptSpan(reader, layout, layout.all(), body, dst),
    check: () => mustEqual(dst, obj.plaintext, 'ParallelDecryptor'),
  };
}

export function allocSharedPair(ctBytes: number, ptBytes: number): { ct: Buffer; out: Buffer } {
  return { ct: allocShared(ctBytes), out: allocShared(ptBytes) };
}

/** Streaming decrypt of the whole object, fed in STREAM_CHUNK pieces. */
export function streamDecryptCase(obj: SealedObject, keyring: Keyring): CoreCase {
  const pieces = chunksOf(obj.ciphertext, STREAM_CHUNK);
  const want = obj.plaintext.length;
  let got = 0;
  return {
    bytes: want,
    fn: async () => {
      let n = 0;
      for await (const p of decryptIterable(pieces, { keyring, expect: BINDING })) n += p.length;
      got = n;
    },
    check: () => {
      if (got !== want)
        throw new Error(`bench self-check failed: decryptIterable gave ${got} bytes, want ${want}`);
    },
  };
}

/** Streaming encrypt of `plaintext`, fed in STREAM_CHUNK pieces (new message, new key each time). */
export function streamEncryptCase(plaintext: Buffer, keyring: Keyring, frameLength: number): CoreCase {
  const pieces = chunksOf(plaintext, STREAM_CHUNK);
  let got = 0;
  return {
    bytes: plaintext.length,
    fn: async () => {
      let n = 0;
      for await (const c of encryptIterable(pieces, { keyring, binding: BINDING, frameLength }))
        n += c.length;
      got = n;
    },
    check: () => {
      if (got <= plaintext.length)
        throw new Error('bench self-check failed: encryptIterable output too short');
    },
  };
}

/**
 * `@aws-crypto/client-node`, the SDK that defines the format, on the same data, frame
 * length, suite and keyring: encrypt, and decrypt of what it encrypted.
 */
export async function sdkCases(
  plaintext: Buffer,
  keyring: Keyring,
  frameLength: number,
): Promise<{ encrypt: CoreCase; decrypt: CoreCase }> {
  const client = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const opts = {
    suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
    encryptionContext: { ...contextFor(BINDING) },
    frameLength,
  };
  const { result } = await client.encrypt(keyring, plaintext, opts);
  let last: Uint8Array = new Uint8Array(0);
  return {
    encrypt: {
      bytes: plaintext.length,
      fn: () => client.encrypt(keyring, plaintext, opts),
      check: () => {},
    },
    decrypt: {
      bytes: plaintext.length,
      fn: async () => {
        last = (await client.decrypt(keyring, result)).plaintext;
      },
      check: () =>
        mustEqual(Buffer.from(last.buffer, last.byteOffset, last.length), plaintext, 'SDK decrypt'),
    },
  };
}

/** The "pure Node" reference: one AES-256-GCM call over the whole buffer, no framing. */
export function oneshotCases(plaintext: Buffer): { encrypt: CoreCase; decrypt: CoreCase } {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  const tag = c.getAuthTag();
  let last = Buffer.alloc(0);
  return {
    encrypt: {
      bytes: plaintext.length,
      fn: () => {
        const e = createCipheriv('aes-256-gcm', key, iv);
        e.update(plaintext);
        e.final();
        e.getAuthTag();
      },
      check: () => {},
    },
    decrypt: {
      bytes: plaintext.length,
      fn: () => {
        const d = createDecipheriv('aes-256-gcm', key, iv);
        d.setAuthTag(tag);
        last = d.update(ct);
        d.final();
      },
      check: () => mustEqual(last, plaintext, 'node:crypto one-shot decrypt'),
    },
  };
}

/** Peak resident set size so far, from the kernel (Linux); undefined elsewhere. */
export function vmHwmBytes(): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

export interface RoundTripResult {
  bytes: number;
  seconds: number;
  /** CPU time of this process over the round trip (user + system). */
  cpuSeconds: number;
  peakRssSampled: number;
  vmHwm?: number;
  rssAtStart: number;
}

/**
 * Streams `totalBytes` of generated plaintext through encryptIterable ->
 * decryptIterable in this process (no disk), checking every byte that comes
 * out and sampling RSS after each output chunk. Memory use must not grow with
 * `totalBytes`: that is what this measures.
 */
export async function streamRoundTrip(
  keyring: Keyring,
  totalBytes: number,
  frameLength: number,
  progress?: (doneBytes: number, rss: number) => void,
): Promise<RoundTripResult> {
  const pattern = testData(STREAM_CHUNK);
  function* source(): Generator<Buffer> {
    // Reusing one buffer is fine: encryptIterable consumes a chunk before asking for the next.
    for (let left = totalBytes; left > 0; left -= STREAM_CHUNK)
      yield pattern.subarray(0, Math.min(left, STREAM_CHUNK));
  }
  const rssAtStart = process.memoryUsage.rss();
  let peak = rssAtStart;
  let pos = 0;
  let nextReport = 512 * 1024 * 1024;
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const sealed = encryptIterable(source(), { keyring, binding: BINDING, frameLength });
  for await (const out of decryptIterable(sealed, { keyring, expect: BINDING })) {
    checkPattern(out, pattern, pos);
    pos += out.length;
    const rss = process.memoryUsage.rss();
    if (rss > peak) peak = rss;
    if (progress && pos >= nextReport) {
      progress(pos, rss);
      nextReport += 512 * 1024 * 1024;
    }
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  if (pos !== totalBytes)
    throw new Error(`bench self-check failed: round trip gave ${pos} of ${totalBytes} bytes`);
  const hwm = vmHwmBytes();
  return {
    bytes: pos,
    seconds,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    peakRssSampled: peak,
    rssAtStart,
    ...(hwm === undefined ? {} : { vmHwm: hwm }),
  };
}

/** `out` must equal the repeating `pattern` starting at stream offset `pos`. */
function checkPattern(out: Buffer, pattern: Buffer, pos: number): void {
  let o = 0;
  while (o < out.length) {
    const p = (pos + o) % pattern.length;
    const n = Math.min(pattern.length - p, out.length - o);
    if (out.compare(pattern, p, p + n, o, o + n) !== 0) {
      throw new Error(`bench self-check failed: round trip corrupted bytes near offset ${pos + o}`);
    }
    o += n;
  }
}
