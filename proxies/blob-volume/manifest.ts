/**
 * Pinned dataset manifests for datasources. The manifest `membrane protect`
 * writes (format and verification: policy/manifest.ts) lists every object with
 * its ciphertext size and message ID; a clean-room spec pins its digest. The
 * volume then serves exactly the listed objects and refuses any other version
 * of them.
 *
 * Why message ID + ciphertext size suffice per object on the read path: the
 * message ID is covered by the header authentication tag (and keys the frame
 * key derivation), and the size fixes the frame count and final-frame length,
 * so an object with the pinned ID and size that authenticates IS the pinned
 * ciphertext; no whole-object hash is needed before serving a random read.
 */
import { MembraneError } from '../../policy/errors.js';
import { MANIFEST_NAME, manifestDigest, parseManifest } from '../../policy/manifest.js';
import type { BlobStore } from './store/types.js';

export { MANIFEST_NAME, manifestDigest };

const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

export interface PinnedObject {
  readonly path: string;
  readonly plaintextBytes: number;
  readonly ciphertextBytes: number;
  readonly messageId: string;
}

export class PinnedManifest {
  private readonly byPath: Map<string, PinnedObject>;

  constructor(
    readonly digest: string,
    readonly datasource: string,
    objects: PinnedObject[],
  ) {
    this.byPath = new Map(objects.map((o) => [o.path, o]));
  }

  get(path: string): PinnedObject | undefined {
    return this.byPath.get(path);
  }

  paths(): IterableIterator<string> {
    return this.byPath.keys();
  }

  get size(): number {
    return this.byPath.size;
  }
}

/**
 * Parses a manifest and verifies it against the pinned digest and the datasource
 * it must describe. Any doubt is an error: a pinned manifest is either wholly
 * trusted or the volume does not mount.
 */
export function parsePinnedManifest(
  text: string,
  pinnedDigest: string,
  datasource: string,
  where = MANIFEST_NAME,
): PinnedManifest {
  const m = parseManifest(text, where, pinnedDigest);
  if (m.datasource !== datasource) {
    throw new MembraneError(
      'MANIFEST_INVALID',
      `manifest describes datasource '${m.datasource}', not '${datasource}'`,
      { where },
    );
  }
  return new PinnedManifest(m.digest, m.datasource, m.objects);
}

/** The manifest given out of band, or `manifest.json` at the root of the store. */
export async function loadPinnedManifest(
  store: BlobStore,
  pin: { digest: string; manifest?: string | Uint8Array },
  datasource: string,
): Promise<PinnedManifest> {
  if (pin.manifest !== undefined) {
    const text = typeof pin.manifest === 'string' ? pin.manifest : Buffer.from(pin.manifest).toString('utf8');
    return parsePinnedManifest(text, pin.digest, datasource, 'pinned manifest (given)');
  }
  const where = `${store.description}/${MANIFEST_NAME}`;
  const info = await store.stat(MANIFEST_NAME);
  if (!info)
    throw new MembraneError('MANIFEST_MISSING', 'the datasource pins a manifest but the store has none', {
      where,
    });
  if (info.size > MAX_MANIFEST_BYTES)
    throw new MembraneError('MANIFEST_INVALID', `manifest is implausibly large (${info.size} bytes)`, {
      where,
    });
  const bytes = await store.read(MANIFEST_NAME, 0, info.size, { ifMatch: info.etag });
  return parsePinnedManifest(bytes.toString('utf8'), pin.digest, datasource, where);
}
