/**
 * mountVolume(): assembles a datasource or datasink from the modules of this
 * directory and mounts it with fuse-native (libfuse 2, multi-threaded loop; the
 * callbacks run on this process's main thread, so nothing here blocks it).
 *
 * FUSE options and why:
 *   timeout disabled — fuse-native would answer a slow op with ETIMEDOUT while our
 *                      code still writes into the kernel's buffer later (it cannot
 *                      detach it); stores carry their own timeouts instead.
 *   big_writes       — 128 KiB write requests instead of 4 KiB (libfuse 2 default).
 *   fsname/subtype   — `mount` shows "membrane-<name> on <dir> type fuse.membrane".
 *   no kernel_cache  — the page cache is dropped at each open, so a replaced or
 *                      tampered object is re-verified by the next open.
 */
import { mkdir, readdir, unlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import Fuse from 'fuse-native';
import { MembraneError } from '../../policy/errors.js';
import { Committer } from './commit.js';
import { VolumeErrorCode } from './errno.js';
import { FrameCache } from './frame-cache.js';
import { fuseHandlers } from './fuse-adapter.js';
import { loadPinnedManifest, MANIFEST_NAME } from './manifest.js';
import { isSweepable, metered } from './metered-store.js';
import { detach, mountPoints, prepareMountpoint } from './mountpoint.js';
import { type CodecSpec, SourceObjects } from './objects.js';
import { type ResolvedOptions, resolveOptions, type VolumeOptions } from './options.js';
import { Reporter } from './report.js';
import { keyringSealer, plainSealer, type Sealer } from './sealer.js';
import { OpaqueSinkStore, SinkManifestWriter } from './sink-manifest.js';
import { type ForeignReader, SinkVolume } from './sink-ops.js';
import { SourceVolume } from './source-ops.js';
import { SourceReader } from './source-reader.js';
import { STAGING_PREFIX } from './staging.js';
import { aeadBlockCipher, plainBlockCipher } from './staging-cipher.js';
import { FdPool } from './staging-fds.js';
import { Listing } from './tree.js';

export interface MountedVolume {
  readonly name: string;
  readonly mountpoint: string;
  readonly kind: 'datasource' | 'datasink';
  /** Datasinks: commits every file with uncommitted changes; rejects naming those that failed. */
  flush(): Promise<void>;
  /** Flushes (datasinks), unmounts, then zeroes caches and closes staging. Idempotent. */
  unmount(): Promise<void>;
}

/** fuse-native's native binding (already loaded by fuse-native; require() returns the cached module). */
const fuseBinding = createRequire(import.meta.url)('node-gyp-build')(
  dirname(createRequire(import.meta.url).resolve('fuse-native/package.json')),
) as { fuse_native_unmount(mnt: string, thread: Buffer | null): void };

/** How long one fusermount/umount may take before the unmount counts as failed. */
const UNMOUNT_TIMEOUT_MS = 15_000;

/**
 * fuse-native, with our -o options and our unmount.
 *
 * fuse-native 2.2.6 unmounts with exec(`fusermount -uz "<path>"`): a shell, with the
 * path in double quotes, so `$(...)` in a mount path ran as root (issue 12, defect 1).
 * Ours runs fusermount (then umount -l) with an argument vector, never a shell, each
 * with a timeout. And when both fail, fuse-native kept its loop handle referenced, so
 * the process could never exit: we release it in every case and report the failure;
 * a mount left behind becomes stale when this process exits (the kernel aborts the
 * connection) and the next mount detaches it (mountpoint.ts).
 */
class MembraneFuse extends Fuse {
  protected override _fuseOptions(): string {
    const base = super._fuseOptions();
    return base ? `${base},big_writes` : '-obig_writes';
  }

  protected override _close(cb: (err: Error | null) => void): void {
    const mnt = this.mnt;
    const release = () => {
      try {
        fuseBinding.fuse_native_unmount(mnt, this._thread);
      } catch {
        // Nothing to release (never mounted).
      }
    };
    detach(mnt, UNMOUNT_TIMEOUT_MS).then(
      () => {
        release();
        cb(null);
      },
      async (e: unknown) => {
        // Someone else detached it already (or it was never listed): that is fine.
        const still = await mountPoints().then(
          (m) => m.has(mnt),
          () => true,
        );
        release();
        cb(still ? (e as Error) : null);
      },
    );
  }
}

/** A volume's operations before they are mounted (tests drive them directly). */
export interface AssembledVolume {
  ops: SourceVolume | SinkVolume;
  sink?: SinkVolume;
  /** Sealed datasinks with provenance: this run's signed manifest (written after commits). */
  manifest?: SinkManifestWriter;
  close(): Promise<void>;
}

/** Builds the volume's parts from its options, without mounting anything. */
export async function assembleVolume(options: VolumeOptions): Promise<AssembledVolume> {
  const o = resolveOptions(options);
  const report = new Reporter(o.name, o.audit, o.metrics, o.log);
  return o.kind === 'datasource' ? assembleSource(o, report) : assembleSink(o, report);
}

export async function mountVolume(options: VolumeOptions): Promise<MountedVolume> {
  const o = resolveOptions(options);
  const report = new Reporter(o.name, o.audit, o.metrics, o.log);
  const parts = o.kind === 'datasource' ? await assembleSource(o, report) : await assembleSink(o, report);
  let fuse: MembraneFuse;
  try {
    const mountpoint = await prepareMountpoint(o.mountpoint);
    fuse = new MembraneFuse(mountpoint, fuseHandlers(parts.ops, report), {
      timeout: false,
      fsname: `membrane-${o.name.replace(/[^A-Za-z0-9._-]/g, '_')}`,
      subtype: 'membrane',
      allowOther: o.allowOther,
    });
    await new Promise<void>((res, rej) => fuse.mount((e) => (e ? rej(e) : res())));
  } catch (e) {
    await parts.close();
    if (e instanceof MembraneError) throw e;
    throw new MembraneError(VolumeErrorCode.MOUNT_FAILED, `cannot mount: ${(e as Error).message}`, {
      where: o.mountpoint,
      cause: e,
    });
  }

  const flush = async () => {
    const failed = (await parts.sink?.flushAll()) ?? [];
    // What did commit gets its signed manifest even when something else failed.
    await parts.manifest?.write();
    if (failed.length > 0) {
      throw new MembraneError(
        VolumeErrorCode.COMMIT_FAILED,
        `${failed.length} file(s) could not be committed: ${failed.map((f) => f.path).join(', ')}`,
        { where: `volume '${o.name}'`, cause: failed[0]!.error },
      );
    }
  };
  let closing: Promise<void> | undefined;
  return {
    name: o.name,
    mountpoint: fuse.mnt,
    kind: o.kind,
    flush,
    unmount: () => {
      closing ??= (async () => {
        let flushError: unknown;
        await flush().catch((e: unknown) => {
          flushError = e;
        });
        let unmountError: unknown;
        await new Promise<void>((res, rej) => fuse.unmount((e) => (e ? rej(e) : res()))).catch(
          (e: unknown) => {
            // MembraneFuse._close already checked the mount table: still mounted (or unknown).
            unmountError = e;
          },
        );
        // Releases during the unmount may have committed more: the manifest must list them.
        let manifestError: unknown;
        await parts.manifest?.write().catch((e: unknown) => {
          manifestError = e;
        });
        await parts.close();
        if (flushError) throw flushError;
        if (manifestError) throw manifestError;
        if (unmountError) {
          throw new MembraneError(
            VolumeErrorCode.MOUNT_FAILED,
            `cannot unmount: ${(unmountError as Error).message}`,
            {
              where: fuse.mnt,
              cause: unmountError,
            },
          );
        }
      })();
      return closing;
    },
  };
}

async function assembleSource(o: ResolvedOptions, report: Reporter): Promise<AssembledVolume> {
  // A missing store or a file in its place would mount an empty datasource (defect 13).
  await o.store.probe?.(true);
  const store = metered(o.store, o.metrics);
  const p = o.protection;
  const manifest = o.pinnedManifest ? await loadPinnedManifest(store, o.pinnedManifest, o.name) : undefined;
  const codec: CodecSpec =
    p.mode === 'secure'
      ? { kind: 'sealed', keyring: p.keyring }
      : p.mode === 'trusted'
        ? { kind: 'sealed', keyring: p.recipient }
        : { kind: 'plain', frameLength: o.frameLength };
  const cache = new FrameCache(o.cacheBytes);
  const objects = new SourceObjects({
    store,
    binding: o.name,
    codec,
    manifest,
    report,
    onClose: (obj) => cache.dropObject(obj.id),
  });
  const reader = new SourceReader(objects, cache, o.metrics);
  const listing = new Listing(store, {
    ttlMs: o.listingTtlMs,
    hide: (path) => path === MANIFEST_NAME,
    pinned: manifest?.paths(),
  });
  const ops = new SourceVolume({
    store,
    listing,
    objects,
    reader,
    report,
    manifest,
    readAheadFrames: o.readAheadFrames,
  });
  return {
    ops,
    close: async () => {
      ops.close();
      objects.close();
      cache.clear();
    },
  };
}

async function assembleSink(o: ResolvedOptions, report: Reporter): Promise<AssembledVolume> {
  // A sink may create its store on first commit, but a file in its place fails every commit.
  await o.store.probe?.(false);
  const p = o.protection;
  // Sealed sinks with provenance: opaque store names and a signed manifest (defects 10, 12).
  const opaque = o.provenance && p.mode !== 'open' ? new OpaqueSinkStore(o.store) : undefined;
  const store = metered(opaque ?? o.store, o.metrics);
  let manifest: SinkManifestWriter | undefined;
  if (opaque && o.provenance && (p.mode === 'secure' || p.mode === 'trusted')) {
    manifest = new SinkManifestWriter({
      sink: o.name,
      mode: p.mode,
      keyring: p.mode === 'secure' ? p.keyring : p.recipient,
      store: opaque,
      provenance: o.provenance,
    });
    await manifest.prepare();
  }
  // Leftovers of commits a crash interrupted: never visible as objects, removed here.
  if (isSweepable(o.store)) {
    const n = await o.store.sweep();
    if (n > 0) report.log(`${o.name}: removed ${n} incomplete upload(s) left by an earlier crash`);
  }
  await mkdir(o.stagingDir, { recursive: true, mode: 0o700 });
  await sweepStaging(o.stagingDir);
  const sealer: Sealer =
    p.mode === 'secure'
      ? keyringSealer(p.keyring, o.name, o.frameLength)
      : p.mode === 'trusted'
        ? keyringSealer(p.recipient, o.name, o.frameLength)
        : plainSealer;
  const committer = new Committer(store, sealer, report, p.mode);
  const cache = new FrameCache(Math.min(o.cacheBytes, 16 << 20));
  let foreign: ForeignReader | undefined;
  let objects: SourceObjects | undefined;
  if (p.mode !== 'trusted') {
    const codec: CodecSpec =
      p.mode === 'secure'
        ? { kind: 'sealed', keyring: p.keyring }
        : { kind: 'plain', frameLength: o.frameLength };
    objects = new SourceObjects({
      store,
      binding: o.name,
      codec,
      report,
      onClose: (obj) => cache.dropObject(obj.id),
    });
    foreign = {
      objects,
      reader: new SourceReader(objects, cache, o.metrics),
      readAheadFrames: o.readAheadFrames,
    };
  }
  const listing = new Listing(store, { ttlMs: o.listingTtlMs });
  const ops = new SinkVolume({
    store,
    listing,
    committer,
    report,
    outputRules: o.outputRules,
    stagingDir: o.stagingDir,
    fds: new FdPool(o.stagingFds),
    cipher: p.mode === 'plaintext-passthrough' ? plainBlockCipher : aeadBlockCipher,
    foreign,
  });
  return {
    ops,
    sink: ops,
    manifest,
    close: async () => {
      await ops.close();
      objects?.close();
      cache.clear();
      opaque?.destroy();
    },
  };
}

/**
 * Staging files are unlinked the moment they are created; a name can survive
 * only if a process died in between. Its content is sealed under a key that died
 * with that process, so it is noise: remove it.
 */
async function sweepStaging(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    if (name.startsWith(STAGING_PREFIX)) await unlink(join(dir, name)).catch(() => {});
  }
}
