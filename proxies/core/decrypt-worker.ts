/**
 * Worker side of ParallelDecryptor: opens a contiguous run of frames from a shared
 * ciphertext buffer into a shared plaintext buffer. The frame key arrives with the
 * job and is zeroed when the job ends; nothing else is kept between jobs.
 */
import { parentPort } from 'node:worker_threads';
import { createAead } from './aead.js';
import { FrameCipher } from './frame-cipher.js';
import type { FrameJob } from './parallel.js';
import { runFrames } from './parallel-run.js';

parentPort?.on('message', (job: FrameJob) => {
  const key = Buffer.from(job.key);
  const aead = createAead(key);
  const frames = new FrameCipher(aead, Buffer.from(job.messageId), job.frameLength);
  try {
    runFrames(frames, job);
    parentPort?.postMessage({ id: job.id, ok: true });
  } catch (e) {
    const err = e as Error & { code?: string };
    parentPort?.postMessage({
      id: job.id,
      ok: false,
      code: err.code ?? 'FORMAT_FRAME_AUTH',
      message: err.message,
    });
  } finally {
    frames.destroy();
    key.fill(0);
    new Uint8Array(job.key).fill(0);
  }
});
