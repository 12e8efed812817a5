/**
 * Sealing of staging blocks. Datasink plaintext is never written to disk: each
 * block of the staging file is AES-256-GCM sealed under a key that exists only
 * in this process's memory (generated per staging file, never persisted), so a
 * staging file left behind by a crash is unreadable noise.
 *
 * Nonce = 4 zero bytes || 64-bit counter, the counter incremented on EVERY seal
 * under the key, so a nonce is never reused. The caller remembers the counter a
 * block was sealed with and passes it to open(): an older sealed copy of the same
 * block (rollback on disk) has another nonce and fails. AAD binds the block index
 * and its content length, so slots cannot be moved or resized either.
 */
import { createCipheriv, createDecipheriv, createSecretKey, type KeyObject, randomBytes } from 'node:crypto';
import { MembraneError } from '../../policy/errors.js';
import { VolumeErrorCode } from './errno.js';

export interface BlockCipher {
  /** Bytes a sealed block carries beyond its content. */
  readonly tagLength: number;
  /** Seals `plain` as block `index` under a fresh nonce; writes tag || ciphertext into `out`; returns the nonce counter used. */
  seal(index: number, plain: Uint8Array, out: Uint8Array): number;
  /** Opens block `index` sealed with `counter`; writes the plaintext into `out`; throws VOLUME_STAGING_AUTH. */
  open(index: number, counter: number, sealed: Uint8Array, out: Uint8Array): void;
  destroy(): void;
}

const TAG = 16;

function nonceOf(counter: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeBigUInt64BE(BigInt(counter), 4);
  return n;
}

function aadOf(index: number, length: number): Buffer {
  const a = Buffer.alloc(12);
  a.writeBigUInt64BE(BigInt(index), 0);
  a.writeUInt32BE(length, 8);
  return a;
}

/** AES-256-GCM under an ephemeral in-memory key. */
export function aeadBlockCipher(): BlockCipher {
  const raw = randomBytes(32);
  let key: KeyObject | undefined = createSecretKey(raw);
  raw.fill(0);
  let counter = 0;
  const live = (): KeyObject => {
    if (!key) throw new Error('staging cipher used after destroy()');
    return key;
  };
  return {
    tagLength: TAG,
    seal(index, plain, out) {
      const ctr = ++counter;
      const c = createCipheriv('aes-256-gcm', live(), nonceOf(ctr));
      c.setAAD(aadOf(index, plain.length));
      const body = c.update(plain);
      c.final();
      c.getAuthTag().copy(out, 0);
      out.set(body, TAG);
      body.fill(0);
      return ctr;
    },
    open(index, ctr, sealed, out) {
      const len = sealed.length - TAG;
      const d = createDecipheriv('aes-256-gcm', live(), nonceOf(ctr));
      d.setAAD(aadOf(index, len));
      d.setAuthTag(sealed.subarray(0, TAG));
      const body = d.update(sealed.subarray(TAG));
      try {
        d.final();
      } catch {
        body.fill(0);
        throw new MembraneError(
          VolumeErrorCode.STAGING_AUTH,
          `staging block ${index} failed authentication (the staging file was modified)`,
        );
      }
      out.set(body, 0);
      body.fill(0);
    },
    destroy() {
      key = undefined; // KeyObject memory is released with the object; nothing else holds the key.
    },
  };
}

/**
 * No sealing at all: ONLY for the 'plaintext-passthrough' benchmark mode, which
 * measures the FUSE code without crypto. Never used for a spec-configured volume.
 */
export function plainBlockCipher(): BlockCipher {
  let counter = 0;
  return {
    tagLength: 0,
    seal(_index, plain, out) {
      out.set(plain, 0);
      return ++counter;
    },
    open(_index, _ctr, sealed, out) {
      out.set(sealed, 0);
    },
    destroy() {},
  };
}
