/**
 * Child process of the aead suite. Every group of cases runs in a fresh process:
 *   - isolation: allocation-heavy cases (streaming, the SDK) leave the allocator
 *     and the GC in a state that slowed whatever ran after them in the same
 *     process by up to 2x; a fresh process per group makes frame sizes and
 *     implementations comparable regardless of order;
 *   - the AEAD backend is chosen once at module load, so the node:crypto fallback
 *     needs a process started with MEMBRANE_AEAD=node-crypto;
 *   - the RSS check's peak (VmHWM) must reflect streaming alone.
 * Cases within one group are timed round-robin (measureInterleaved).
 * Input: one JSON argument. Output: one JSON line on stdout. Progress on stderr.
 */

import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { aeadBackend, dekKeyring, ParallelDecryptor } from '../proxies/core/index.js';
import {
  allocSharedPair,
  type CoreCase,
  decryptSpanCase,
  oneshotCases,
  parallelCase,
  type RoundTripResult,
  type SealedObject,
  sdkCases,
  sealObject,
  streamDecryptCase,
  streamEncryptCase,
  streamRoundTrip,
  testData,
} from './aead-core.js';
import { measureInterleaved, type Rate } from './measure.js';

export const CHILD_OPS = [
  'decrypt',
  'decrypt-parallel',
  'decrypt-stream',
  'encrypt-stream',
  'sdk-encrypt',
  'sdk-decrypt',
  'oneshot-decrypt',
  'oneshot-encrypt',
] as const;
export type ChildOp = (typeof CHILD_OPS)[number];

export type ChildRequest =
  | { mode: 'cases'; ops: ChildOp[]; frameLength: number; objectBytes: number; reps: number }
  | { mode: 'stream'; totalBytes: number; frameLength: number };

export type ChildResponse =
  | { mode: 'cases'; backend: string; threads: number; results: { op: ChildOp; rate: Rate }[] }
  | ({ mode: 'stream'; backend: string } & RoundTripResult);

async function runCases(req: Extract<ChildRequest, { mode: 'cases' }>): Promise<ChildResponse> {
  const keyring = dekKeyring(randomBytes(32));
  const plaintext = testData(req.objectBytes);
  const needsObject = req.ops.some(
    (o) => o === 'decrypt' || o === 'decrypt-parallel' || o === 'decrypt-stream',
  );
  const obj: SealedObject | undefined = needsObject
    ? await sealObject(keyring, plaintext, req.frameLength)
    : undefined;
  const threads = availableParallelism();
  let pd: ParallelDecryptor | undefined;
  const sdk = req.ops.some((o) => o.startsWith('sdk-'))
    ? await sdkCases(plaintext, keyring, req.frameLength)
    : undefined;
  const oneshot = req.ops.some((o) => o.startsWith('oneshot-')) ? oneshotCases(plaintext) : undefined;
  const build = (op: ChildOp): CoreCase => {
    switch (op) {
      case 'decrypt':
        return decryptSpanCase(obj!, Buffer.allocUnsafe(req.objectBytes));
      case 'decrypt-parallel': {
        pd = new ParallelDecryptor({ threads });
        const shared = allocSharedPair(obj!.ciphertext.length, req.objectBytes);
        return parallelCase(obj!, pd, shared.ct, shared.out);
      }
      case 'decrypt-stream':
        return streamDecryptCase(obj!, keyring);
      case 'encrypt-stream':
        return streamEncryptCase(plaintext, keyring, req.frameLength);
      case 'sdk-encrypt':
        return sdk!.encrypt;
      case 'sdk-decrypt':
        return sdk!.decrypt;
      case 'oneshot-decrypt':
        return oneshot!.decrypt;
      case 'oneshot-encrypt':
        return oneshot!.encrypt;
    }
  };
  const cases = req.ops.map(build);
  try {
    const rates = await measureInterleaved(cases, req.reps);
    for (const c of cases) c.check();
    return {
      mode: 'cases',
      backend: aeadBackend,
      threads,
      results: req.ops.map((op, i) => ({ op, rate: rates[i]! })),
    };
  } finally {
    await (pd as ParallelDecryptor | undefined)?.close();
    obj?.reader.close();
  }
}

async function runStream(req: Extract<ChildRequest, { mode: 'stream' }>): Promise<ChildResponse> {
  const keyring = dekKeyring(randomBytes(32));
  const gib = (n: number) => (n / 2 ** 30).toFixed(2);
  const r = await streamRoundTrip(keyring, req.totalBytes, req.frameLength, (done, rss) =>
    process.stderr.write(
      `bench aead: streamed ${gib(done)} / ${gib(req.totalBytes)} GiB, rss ${(rss / 2 ** 20).toFixed(0)} MiB\n`,
    ),
  );
  return { mode: 'stream', backend: aeadBackend, ...r };
}

try {
  const req = JSON.parse(process.argv[2] ?? '') as ChildRequest;
  const res = req.mode === 'cases' ? await runCases(req) : await runStream(req);
  process.stdout.write(JSON.stringify(res) + '\n');
} catch (e) {
  process.stderr.write(`bench aead child: ${(e as Error).stack ?? e}\n`);
  process.exitCode = 1;
}
