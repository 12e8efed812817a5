/**
 * The file systems `membrane bench volume` compares, behind one shape:
 *   membrane-secure      — the blob volume, objects sealed with a DEK (the product);
 *   membrane-passthrough — the same FUSE code with PASSTHROUGH_PROTECTION: no crypto
 *                          at all, i.e. the ceiling of a Node FUSE file system;
 *   gocryptfs            — Debian's gocryptfs (Go, AES-GCM, 4 KiB blocks), when installed;
 *   local-file           — the plaintext file on the local disk (page-cache reference).
 * Every mount is served by its own fresh process (a child running
 * bench/volume-mount.js, or gocryptfs -fg) whose pid the bench samples.
 * Also here: generating the benchmark object and sealing it into a store.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { MembraneError } from '../policy/errors.js';
import { FsStore } from '../proxies/blob-volume/store/fs-store.js';
import { dekKeyring, encryptIterable } from '../proxies/core/index.js';
import { detachIfMounted, mountPoints } from './volume-load.js';
import type { MountEvent, MountRequest, ThreadGroups, VolumeCounters } from './volume-mount.js';

const exec = promisify(execFile);

export const IMPL = {
  secure: 'membrane-secure',
  passthrough: 'membrane-passthrough',
  gocryptfs: 'gocryptfs',
  local: 'local-file',
} as const;
export type ImplName = (typeof IMPL)[keyof typeof IMPL];

/** The object every implementation serves, under this name. */
export const OBJECT = 'object.bin';
/** Datasource and datasink names (bound into the sealed objects' encryption context). */
export const SOURCE_NAME = 'bench';
export const SINK_NAME = 'bench-sink';

/** One mounted (or local) view. */
export interface Served {
  /** Directory holding OBJECT (sources) or accepting new files (sinks). */
  dir: string;
  /** Process serving the file system; undefined for the local disk. */
  pid?: number;
  /** Membrane volumes: thread ids of the serving process by role (see volume-mount.ts). */
  threads?: ThreadGroups;
  /** Membrane volumes: metrics counters so far. */
  counters?(): Promise<VolumeCounters>;
  /** Unmounts (a datasink flushes first) and waits for the serving process to exit. */
  close(): Promise<VolumeCounters | undefined>;
}

export interface Impl {
  name: ImplName;
  source(): Promise<Served>;
  sink(): Promise<Served>;
  /** Files on the local disk behind the object (page-cache warm-up / drop). */
  lowerFiles(): Promise<string[]>;
  /** Removes everything sink runs left behind in the backing store. */
  clearSink(): Promise<void>;
}

// ---- the object ---------------------------------------------------------------------------------

/**
 * Pseudo-random plaintext: the AES-256-CTR keystream of a fixed key, so every
 * run serves the same incompressible bytes, generated at memory speed.
 */
export async function* pseudoRandom(totalBytes: number, chunkBytes = 1 << 20): AsyncGenerator<Buffer> {
  const ks = createCipheriv('aes-256-ctr', Buffer.alloc(32, 0x6d), Buffer.alloc(16, 0));
  const zeros = Buffer.alloc(chunkBytes);
  for (let left = totalBytes; left > 0; left -= chunkBytes) {
    yield ks.update(left >= chunkBytes ? zeros : zeros.subarray(0, left));
  }
}

/** Writes pseudoRandom(bytes) to `path`. */
export async function writePlaintext(path: string, bytes: number): Promise<void> {
  const fh = await open(path, 'w', 0o600);
  try {
    for await (const chunk of pseudoRandom(bytes)) await fh.write(chunk);
  } finally {
    await fh.close();
  }
}

/** Seals `source` as object `objectPath` of datasource `name` into the fs store at `storeDir`. */
export async function sealIntoStore(
  storeDir: string,
  name: string,
  objectPath: string,
  source: AsyncIterable<Uint8Array>,
  dek: Uint8Array,
  frameLength: number,
): Promise<void> {
  const keyring = dekKeyring(dek);
  await new FsStore(storeDir).put(
    objectPath,
    encryptIterable(source, { keyring, binding: { datasource: name, path: objectPath }, frameLength }),
  );
}

/** Streams a local file in 1 MiB chunks. */
export function fileChunks(path: string): AsyncIterable<Buffer> {
  return createReadStream(path, { highWaterMark: 1 << 20 });
}

// ---- membrane mounts ----------------------------------------------------------------------------

const MOUNT_TIMEOUT_MS = 30_000;
const UNMOUNT_TIMEOUT_MS = 120_000;

/** A child process serving one membrane volume (bench/volume-mount.js). */
export class MembraneMount implements Served {
  private readonly waiters: { want: MountEvent['event'][]; resolve: (e: MountEvent) => void }[] = [];
  private stderr = '';
  private exited: Promise<number | null>;
  threads?: ThreadGroups;

  private constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
  ) {
    this.exited = new Promise((res) => child.on('close', (code) => res(code)));
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(req: MountRequest): Promise<MembraneMount> {
    await detachIfMounted(req.mountpoint);
    await mkdir(req.mountpoint, { recursive: true });
    const script = fileURLToPath(new URL('./volume-mount.js', import.meta.url));
    const child = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'pipe'] });
    const m = new MembraneMount(child, req.mountpoint);
    m.listen();
    child.stdin!.write(`${JSON.stringify(req)}\n`);
    const first = await m.next(['ready', 'error'], MOUNT_TIMEOUT_MS, `mount ${req.mode} ${req.kind}`);
    if (first.event !== 'ready') {
      await m.kill();
      throw new MembraneError(
        'BENCH_MOUNT_FAILED',
        `membrane ${req.mode} ${req.kind} did not mount: ${first.event === 'error' ? first.message : first.event}` +
          (m.stderr ? ` (stderr: ${m.stderr.trim().slice(0, 500)})` : ''),
        { where: req.mountpoint },
      );
    }
    m.threads = first.threads;
    return m;
  }

  private listen(): void {
    let buf = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let e: MountEvent;
        try {
          e = JSON.parse(line) as MountEvent;
        } catch {
          continue;
        }
        const i = this.waiters.findIndex((w) => w.want.includes(e.event));
        if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(e);
      }
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (this.stderr.length < 8000) this.stderr += d;
    });
  }

  private next(want: MountEvent['event'][], ms: number, what: string): Promise<MountEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
      const w = {
        want,
        resolve: (e: MountEvent) => {
          clearTimeout(timer);
          resolve(e);
        },
      };
      this.waiters.push(w);
      this.exited.then((code) => {
        clearTimeout(timer);
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          resolve({ event: 'error', message: `mount process exited with ${code}` });
        }
      });
    });
  }

  async counters(): Promise<VolumeCounters> {
    this.child.stdin!.write('stats\n');
    const e = await this.next(['stats'], 10_000, 'volume stats');
    if (e.event !== 'stats') throw new Error(`volume stats: ${JSON.stringify(e)}`);
    return e.counters;
  }

  async close(): Promise<VolumeCounters | undefined> {
    try {
      this.child.stdin!.write('unmount\n');
      const e = await this.next(['unmounted'], UNMOUNT_TIMEOUT_MS, 'unmount');
      const code = await this.exited;
      if (e.event !== 'unmounted' || code !== 0) {
        throw new MembraneError(
          'BENCH_MOUNT_FAILED',
          `unmount failed (exit ${code}): ${this.stderr.trim().slice(0, 500)}`,
          { where: this.dir },
        );
      }
      return e.counters;
    } catch (e) {
      await this.kill();
      throw e;
    }
  }

  /** Last resort: SIGKILL the server and detach its mount. */
  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
    await detachIfMounted(this.dir);
  }
}

export interface MembranePaths {
  work: string;
  /** 32-byte DEK (secure mode). */
  dek?: Uint8Array;
  frameLength: number;
  /** Datasource store directory (default <work>/store-<mode>). */
  sourceStore?: string;
}

export function membraneImpl(mode: 'secure' | 'passthrough', p: MembranePaths): Impl {
  const name = mode === 'secure' ? IMPL.secure : IMPL.passthrough;
  const sourceStore = p.sourceStore ?? join(p.work, `store-${mode}`);
  const sinkStore = join(p.work, `sink-${mode}`);
  const req = (kind: 'datasource' | 'datasink'): MountRequest => ({
    name: kind === 'datasource' ? SOURCE_NAME : SINK_NAME,
    kind,
    mode,
    storeDir: kind === 'datasource' ? sourceStore : sinkStore,
    mountpoint: join(p.work, 'mnt', `${mode}-${kind}`),
    stagingDir: join(p.work, 'staging'),
    frameLength: p.frameLength,
    ...(mode === 'secure' && p.dek ? { dekHex: Buffer.from(p.dek).toString('hex') } : {}),
  });
  return {
    name,
    source: () => MembraneMount.start(req('datasource')),
    sink: async () => {
      await mkdir(sinkStore, { recursive: true });
      return MembraneMount.start(req('datasink'));
    },
    lowerFiles: async () => [join(sourceStore, OBJECT)],
    clearSink: () => rm(sinkStore, { recursive: true, force: true }),
  };
}

// ---- gocryptfs ----------------------------------------------------------------------------------

const GOCRYPTFS_PASSWORD_CMD = 'echo membrane-bench';

/** gocryptfs -fg serving `cipherDir` at `mountpoint`; resolves once the mount is listed. */
class GocryptfsMount implements Served {
  private stderr = '';
  private readonly exited: Promise<number | null>;

  constructor(
    private readonly child: ChildProcess,
    readonly dir: string,
  ) {
    this.exited = new Promise((res) => child.on('close', (code) => res(code)));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      if (this.stderr.length < 4000) this.stderr += d;
    });
    child.stdout!.resume();
  }

  get pid(): number {
    return this.child.pid!;
  }

  static async start(cipherDir: string, mountpoint: string): Promise<GocryptfsMount> {
    await detachIfMounted(mountpoint);
    await mkdir(mountpoint, { recursive: true });
    const child = spawn(
      'gocryptfs',
      ['-fg', '-q', '-extpass', GOCRYPTFS_PASSWORD_CMD, cipherDir, mountpoint],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const m = new GocryptfsMount(child, mountpoint);
    let exitCode: number | null | undefined;
    void m.exited.then((c) => {
      exitCode = c;
    });
    const deadline = Date.now() + MOUNT_TIMEOUT_MS;
    while (!(await mountPoints()).has(mountpoint)) {
      if (exitCode !== undefined || Date.now() > deadline) {
        await m.kill();
        throw new MembraneError(
          'BENCH_MOUNT_FAILED',
          `gocryptfs did not mount (exit ${exitCode}): ${m.stderr.trim().slice(0, 500)}`,
          { where: mountpoint },
        );
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return m;
  }

  async close(): Promise<undefined> {
    try {
      await exec('fusermount', ['-u', this.dir]);
      let timer: NodeJS.Timeout | undefined;
      const code = await Promise.race([
        this.exited,
        new Promise<'timeout'>((r) => {
          timer = setTimeout(() => r('timeout'), UNMOUNT_TIMEOUT_MS);
        }),
      ]).finally(() => clearTimeout(timer));
      if (code === 'timeout') throw new Error('gocryptfs did not exit after fusermount -u');
    } catch (e) {
      await this.kill();
      throw new MembraneError('BENCH_MOUNT_FAILED', `gocryptfs unmount failed: ${(e as Error).message}`, {
        where: this.dir,
        cause: e,
      });
    }
    return undefined;
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
    await detachIfMounted(this.dir);
  }
}

/** Creates a gocryptfs file system in `work` (cheap scrypt: the KDF is not what we measure). */
export async function initGocryptfs(work: string): Promise<{ cipherDir: string; mountpoint: string }> {
  const cipherDir = join(work, 'gocryptfs-cipher');
  const mountpoint = join(work, 'mnt', 'gocryptfs');
  await mkdir(cipherDir, { recursive: true });
  await exec('gocryptfs', ['-init', '-q', '-extpass', GOCRYPTFS_PASSWORD_CMD, '-scryptn', '10', cipherDir]);
  return { cipherDir, mountpoint };
}

export function gocryptfsImpl(cipherDir: string, mountpoint: string): Impl {
  const mount = () => GocryptfsMount.start(cipherDir, mountpoint);
  return {
    name: IMPL.gocryptfs,
    source: mount,
    sink: mount,
    // Every ciphertext file (names are encrypted; the object is the only large one).
    lowerFiles: async () =>
      (await readdir(cipherDir)).filter((n) => !n.startsWith('gocryptfs.')).map((n) => join(cipherDir, n)),
    // Sink files are removed through a mount (their names are encrypted on disk).
    clearSink: async () => {
      const m = await mount();
      try {
        for (const n of await readdir(mountpoint))
          if (n !== OBJECT) await rm(join(mountpoint, n), { force: true });
      } finally {
        await m.close();
      }
    },
  };
}

/** Copies a local file into the gocryptfs file system as OBJECT (through a mount). */
export async function fillGocryptfs(impl: Impl, plaintext: string): Promise<void> {
  const m = await impl.source();
  try {
    await exec('dd', [
      `if=${plaintext}`,
      `of=${join(m.dir, OBJECT)}`,
      `bs=${1 << 20}`,
      'conv=fsync',
      'status=none',
    ]);
  } finally {
    await m.close();
  }
}

// ---- the local disk -----------------------------------------------------------------------------

export function localImpl(work: string, plaintext: string): Impl {
  const sinkDir = join(work, 'sink-local');
  const dirOf = plaintext.slice(0, plaintext.lastIndexOf('/'));
  return {
    name: IMPL.local,
    source: async () => ({ dir: dirOf, close: async () => undefined }),
    sink: async () => {
      await mkdir(sinkDir, { recursive: true });
      return { dir: sinkDir, close: async () => undefined };
    },
    lowerFiles: async () => [plaintext],
    clearSink: () => rm(sinkDir, { recursive: true, force: true }),
  };
}
