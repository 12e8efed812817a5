/**
 * Child process of `membrane bench volume`: mounts ONE blob volume and serves it
 * until told to unmount. The volume's FUSE handlers run on this process's main
 * thread, so the load (fio, dd) always runs in other processes; a fresh child
 * per measurement also gives each case its own cold frame cache, its own CPU
 * time and its own peak RSS (VmHWM), read from /proc by the parent.
 *
 * Protocol (one JSON object per line):
 *   stdin, first line: MountRequest (the DEK travels here, never on argv, which
 *                      other users can read in /proc/<pid>/cmdline);
 *   stdin, then:       "stats" -> one VolumeCounters line; "unmount" -> unmounts,
 *                      prints {event:'unmounted', counters} and exits 0;
 *                      end of stdin (the parent died) unmounts too.
 *   stdout:            {event:'ready', mountpoint} once mounted, or {event:'error', message}.
 */
import { readdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { mountVolume, PASSTHROUGH_PROTECTION, type VolumeMetrics } from '../proxies/blob-volume/index.js';
import { FsStore } from '../proxies/blob-volume/store/fs-store.js';
import { dekKeyring } from '../proxies/core/index.js';
import { type VolumeCounters, zeroCounters } from './volume-counters.js';

export interface MountRequest {
  name: string;
  kind: 'datasource' | 'datasink';
  /** 'secure': sealed with the DEK; 'passthrough': the same code with no crypto (the ceiling). */
  mode: 'secure' | 'passthrough';
  storeDir: string;
  mountpoint: string;
  stagingDir: string;
  /** Passthrough read granularity / datasink frame length (bytes). */
  frameLength: number;
  /** 64 hex characters; required in secure mode. */
  dekHex?: string;
}

export type { VolumeCounters };

/**
 * Thread ids of this process by role, so the parent can split its CPU time.
 * Node names none of its threads; roles are told apart by creation order
 * (thread ids grow): V8's platform threads (garbage collection, compilation)
 * start with the process, libuv's thread pool (the fs store's reads and writes)
 * on the first asynchronous fs call (the ESM loader's, in practice), so the
 * pool is the UV_THREADPOOL_SIZE newest threads before the mount. Anything
 * that appears later belongs to the mount: libfuse's threads.
 */
export interface ThreadGroups {
  v8: number[];
  libuv: number[];
}

async function threadGroups(): Promise<ThreadGroups> {
  // Make sure the pool has started before looking.
  await readdir('/proc/self/task');
  const others = (await readdir('/proc/self/task'))
    .map(Number)
    .filter((t) => t !== process.pid)
    .sort((a, b) => a - b);
  const poolSize = Math.min(others.length, Number(process.env.UV_THREADPOOL_SIZE) || 4);
  return { v8: others.slice(0, others.length - poolSize), libuv: others.slice(others.length - poolSize) };
}

export type MountEvent =
  | { event: 'ready'; mountpoint: string; threads: ThreadGroups }
  | { event: 'error'; message: string }
  | { event: 'stats'; counters: VolumeCounters }
  | { event: 'unmounted'; counters: VolumeCounters };

function say(e: MountEvent): void {
  process.stdout.write(`${JSON.stringify(e)}\n`);
}

async function main(): Promise<void> {
  const threads = await threadGroups();
  const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  const it = lines[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done) return;
  const req = JSON.parse(first.value) as MountRequest;
  const counters = zeroCounters();
  const metrics: VolumeMetrics = {
    cacheHit: () => {
      counters.cacheHits++;
    },
    cacheMiss: () => {
      counters.cacheMisses++;
    },
    storeRequest: (ms) => {
      counters.storeRequests++;
      counters.storeMs += ms;
    },
    framesDecrypted: (n) => {
      counters.framesDecrypted += n;
    },
    bytesDecrypted: (n) => {
      counters.bytesDecrypted += n;
    },
    bytesEncrypted: (n) => {
      counters.bytesEncrypted += n;
    },
    authFailure: () => {
      counters.authFailures++;
    },
  };
  let dek: Buffer | undefined;
  if (req.mode === 'secure') {
    if (!req.dekHex || !/^[0-9a-f]{64}$/i.test(req.dekHex))
      throw new Error('secure mode needs a 32-byte DEK');
    dek = Buffer.from(req.dekHex, 'hex');
  }
  const volume = await mountVolume({
    name: req.name,
    kind: req.kind,
    mountpoint: req.mountpoint,
    stagingDir: req.stagingDir,
    store: new FsStore(req.storeDir),
    protection: dek ? { mode: 'secure', keyring: dekKeyring(dek) } : PASSTHROUGH_PROTECTION,
    frameLength: req.frameLength,
    metrics,
  });
  dek?.fill(0);
  say({ event: 'ready', mountpoint: volume.mountpoint, threads });
  let closing = false;
  const unmount = async () => {
    if (closing) return;
    closing = true;
    await volume.unmount();
    say({ event: 'unmounted', counters });
  };
  // SIGINT too: a Ctrl-C at the terminal reaches this child as well, and must not leave a stale mount.
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      unmount().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
  for (;;) {
    const next = await it.next();
    if (next.done || next.value.trim() === 'unmount') break;
    if (next.value.trim() === 'stats') say({ event: 'stats', counters: { ...counters } });
  }
  await unmount();
  lines.close();
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    say({ event: 'error', message: e instanceof Error ? e.message : String(e) });
    process.exit(1);
  },
);
