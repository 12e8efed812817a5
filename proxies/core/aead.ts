/**
 * AES-256-GCM primitive behind the frame cipher, module-internal.
 *
 * Two backends with one contract: the native binding (proxies/core/native/gcm.c,
 * OpenSSL via Node's own copy, one reused context per key, output into caller
 * memory) and a pure node:crypto fallback used when the addon is not built or
 * MEMBRANE_AEAD=node-crypto. Both zero the output when a tag fails, so no
 * unauthenticated plaintext survives a failed open().
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Aead {
  /** Encrypts `plaintext` into `out` (same length) and writes the 16-byte tag into `tag`. */
  seal(iv: Uint8Array, aad: Uint8Array, plaintext: Uint8Array, tag: Uint8Array, out: Uint8Array): void;
  /** Decrypts into `out` (same length; may alias `ciphertext`). False, with `out` zeroed, when the tag fails. */
  open(iv: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array, tag: Uint8Array, out: Uint8Array): boolean;
  /** Releases the key schedule now. */
  destroy(): void;
}

interface NativeGcm {
  create(key: Uint8Array): object;
  destroy(ctx: object): void;
  open(
    ctx: object,
    iv: Uint8Array,
    aad: Uint8Array,
    ct: Uint8Array,
    tag: Uint8Array,
    out: Uint8Array,
  ): boolean;
  seal(ctx: object, iv: Uint8Array, aad: Uint8Array, pt: Uint8Array, tag: Uint8Array, out: Uint8Array): void;
}

// dist/proxies/core/aead.js -> <root>/build/Release ; also works from the source tree.
const here = dirname(fileURLToPath(import.meta.url));
const addonPaths = [
  join(here, '..', '..', '..', 'build', 'Release', 'membrane_gcm.node'),
  join(here, '..', '..', 'build', 'Release', 'membrane_gcm.node'),
];

function loadNative(): NativeGcm | undefined {
  if (process.env.MEMBRANE_AEAD === 'node-crypto') return undefined;
  const path = addonPaths.find((p) => existsSync(p));
  if (!path) return undefined;
  try {
    return createRequire(import.meta.url)(path) as NativeGcm;
  } catch {
    return undefined; // e.g. built for another Node ABI: fall back rather than fail
  }
}

const native = loadNative();

/** Which implementation is in use; benchmarks report it. */
export const aeadBackend: 'openssl-native' | 'node-crypto' = native ? 'openssl-native' : 'node-crypto';

export function createAead(key: Uint8Array): Aead {
  return native ? nativeAead(native, key) : nodeCryptoAead(Buffer.from(key));
}

/** Tests only: both backends side by side, whatever the environment selects. */
export function createAeadWith(backend: 'openssl-native' | 'node-crypto', key: Uint8Array): Aead | undefined {
  if (backend === 'node-crypto') return nodeCryptoAead(Buffer.from(key));
  return native ? nativeAead(native, key) : undefined;
}

function nativeAead(n: NativeGcm, key: Uint8Array): Aead {
  let ctx: object | undefined = n.create(key);
  const live = () => {
    if (!ctx) throw new Error('AEAD used after destroy()');
    return ctx;
  };
  return {
    seal: (iv, aad, pt, tag, out) => n.seal(live(), iv, aad, pt, tag, out),
    open: (iv, aad, ct, tag, out) => n.open(live(), iv, aad, ct, tag, out),
    destroy: () => {
      if (ctx) n.destroy(ctx);
      ctx = undefined;
    },
  };
}

function nodeCryptoAead(key: Buffer): Aead {
  return {
    seal(iv, aad, pt, tag, out) {
      const c = createCipheriv('aes-256-gcm', key, iv);
      c.setAAD(aad);
      const a = c.update(pt);
      const b = c.final();
      out.set(a, 0);
      out.set(b, a.length);
      tag.set(c.getAuthTag());
    },
    open(iv, aad, ct, tag, out) {
      const d = createDecipheriv('aes-256-gcm', key, iv);
      d.setAAD(aad);
      d.setAuthTag(tag);
      // update() output is not released until final() has checked the tag.
      const a = d.update(ct);
      try {
        d.final();
      } catch {
        a.fill(0);
        out.fill(0);
        return false;
      }
      out.set(a, 0);
      a.fill(0);
      return true;
    },
    destroy() {
      key.fill(0);
    },
  };
}
