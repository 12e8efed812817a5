/**
 * The load side of `membrane bench volume`: fio and dd as child processes (a
 * FUSE mount must never be driven by the process that serves it), plus what we
 * read from /proc about the process serving a mount while the load runs: CPU
 * time (whole process and its main thread) and resident set size.
 */
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { MembraneError } from '../policy/errors.js';

const exec = promisify(execFile);

/** Result of one load run. */
export interface LoadResult {
  /** Bytes moved by the load. */
  bytes: number;
  /** Wall-clock seconds the load took (for fio: its own runtime; for dd: process start to exit). */
  seconds: number;
  /** Completed I/O requests (fio only). */
  ios?: number;
  /** CPU seconds (user + system) the load generator itself used (fio only). */
  loadCpuSeconds?: number;
}

export interface FioReadJob {
  filename: string;
  rw: 'read' | 'randread';
  blockBytes: number;
  /** Bytes of the file to cover. */
  sizeBytes: number;
  numjobs: number;
  /** Time-bounded run (random reads); otherwise the whole `sizeBytes` once per job. */
  runtimeSeconds?: number;
  direct: boolean;
}

interface FioJson {
  jobs?: {
    error?: number;
    job_runtime?: number;
    usr_cpu?: number;
    sys_cpu?: number;
    read?: { io_bytes?: number; total_ios?: number; runtime?: number };
  }[];
}

/** Runs fio (psync engine, read-only) and sums its jobs. */
export async function runFioRead(job: FioReadJob): Promise<LoadResult> {
  const args = [
    '--name=membrane-bench',
    `--filename=${job.filename}`,
    `--rw=${job.rw}`,
    `--bs=${job.blockBytes}`,
    `--size=${job.sizeBytes}`,
    `--numjobs=${job.numjobs}`,
    '--ioengine=psync',
    `--direct=${job.direct ? 1 : 0}`,
    // Drop the mount's page cache for the file before starting (fadvise DONTNEED).
    '--invalidate=1',
    '--readonly',
    '--output-format=json',
  ];
  if (job.rw === 'randread') args.push('--randrepeat=0', '--norandommap');
  if (job.runtimeSeconds !== undefined) args.push('--time_based', `--runtime=${job.runtimeSeconds}`);
  let stdout: string;
  try {
    ({ stdout } = await exec('fio', args, { maxBuffer: 16 << 20 }));
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; message: string };
    throw new MembraneError(
      'BENCH_LOAD_FAILED',
      `fio ${job.rw} failed: ${(err.stderr || err.stdout || err.message).trim().slice(0, 800)}`,
      { where: job.filename, cause: e },
    );
  }
  // fio may print notices before the JSON document.
  const at = stdout.indexOf('{');
  const parsed = JSON.parse(at >= 0 ? stdout.slice(at) : stdout) as FioJson;
  const jobs = parsed.jobs ?? [];
  if (jobs.length === 0)
    throw new MembraneError('BENCH_LOAD_FAILED', 'fio printed no jobs', { where: job.filename });
  let bytes = 0;
  let ios = 0;
  let cpu = 0;
  let seconds = 0;
  for (const j of jobs) {
    if (j.error) {
      throw new MembraneError('BENCH_LOAD_FAILED', `fio ${job.rw} job failed with error ${j.error}`, {
        where: job.filename,
      });
    }
    const runtimeMs = j.job_runtime ?? j.read?.runtime ?? 0;
    bytes += j.read?.io_bytes ?? 0;
    ios += j.read?.total_ios ?? 0;
    cpu += (((j.usr_cpu ?? 0) + (j.sys_cpu ?? 0)) / 100) * (runtimeMs / 1000);
    seconds = Math.max(seconds, runtimeMs / 1000);
  }
  if (bytes <= 0 || seconds <= 0)
    throw new MembraneError('BENCH_LOAD_FAILED', `fio ${job.rw} read nothing`, { where: job.filename });
  return { bytes, seconds, ios, loadCpuSeconds: cpu };
}

/**
 * Writes `bytes` of zeros to `path` with dd (1 MiB blocks) and fsync before close,
 * timed from spawn to exit: for a datasink the commit to the store (on fsync or
 * close) is inside the figure; for the others the data reached the disk.
 */
export async function runDdWrite(path: string, bytes: number): Promise<LoadResult> {
  const MiB = 1 << 20;
  if (bytes % MiB !== 0) throw new Error('write size must be a whole number of MiB');
  const t0 = process.hrtime.bigint();
  await runProcess('dd', [
    'if=/dev/zero',
    `of=${path}`,
    `bs=${MiB}`,
    `count=${bytes / MiB}`,
    'conv=fsync',
    'status=none',
  ]);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { bytes, seconds };
}

/**
 * An application streaming one file: a Node process reading it with a read
 * stream (1 MiB chunks) and printing the byte count. Timed from spawn to exit.
 */
export async function runNodeStreamReader(path: string): Promise<LoadResult> {
  const script =
    "const fs=require('node:fs');let n=0;fs.createReadStream(process.argv[1],{highWaterMark:1<<20})" +
    ".on('data',(b)=>{n+=b.length}).on('error',(e)=>{console.error(e.message);process.exit(1)})" +
    ".on('end',()=>console.log(n))";
  const t0 = process.hrtime.bigint();
  const out = await runProcess(process.execPath, ['-e', script, path]);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return { bytes: Number(out.trim()), seconds };
}

/** Spawns a command, resolves with its stdout; rejects naming the command and its stderr. */
export function runProcess(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < 4000) stderr += d;
    });
    child.on('error', (e) =>
      reject(new MembraneError('BENCH_LOAD_FAILED', `cannot run ${cmd}: ${e.message}`, { cause: e })),
    );
    child.on('close', (code, signal) => {
      if (code === 0) resolve(stdout);
      else
        reject(
          new MembraneError(
            'BENCH_LOAD_FAILED',
            `${cmd} ${args.filter((a) => a !== '-e' && a.length < 200).join(' ')} exited with ` +
              `${signal ?? code}: ${stderr.trim().slice(0, 800)}`,
          ),
        );
    });
  });
}

/** Whether `cmd --version`-style probe runs. */
export async function toolVersion(cmd: string, args: string[]): Promise<string | null> {
  try {
    const { stdout, stderr } = await exec(cmd, args, { timeout: 10_000 });
    return (stdout || stderr).trim().split('\n')[0] ?? '';
  } catch {
    return null;
  }
}

// ---- /proc ----------------------------------------------------------------------------------------

let clockTicks: number | undefined;

/** Clock ticks per second for /proc/<pid>/stat times (getconf CLK_TCK; 100 on Linux in practice). */
export async function initClockTicks(): Promise<void> {
  if (clockTicks !== undefined) return;
  const v = await toolVersion('getconf', ['CLK_TCK']);
  const n = Number(v);
  clockTicks = Number.isInteger(n) && n > 0 ? n : 100;
}

/** utime + stime in seconds from a /proc stat line (the comm field may contain spaces). */
function statCpuSeconds(line: string): number {
  const rest = line.slice(line.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  return (Number(rest[11]) + Number(rest[12])) / (clockTicks ?? 100);
}

export interface CpuSample {
  /** Whole process, all threads (including threads that have exited). */
  process: number;
  /** The main thread alone (tid == pid): for Node, where JavaScript and the FUSE handlers run. */
  mainThread: number;
  /** Sum over each named group of thread ids (threads that are gone count 0). */
  groups: Record<string, number>;
}

/** CPU seconds used so far by `pid`, and by groups of its threads; undefined when it is gone. */
export async function cpuOf(
  pid: number,
  groups: Record<string, number[]> = {},
): Promise<CpuSample | undefined> {
  const task = (tid: number) =>
    readFile(`/proc/${pid}/task/${tid}/stat`, 'utf8').then(statCpuSeconds, () => 0);
  try {
    const [all, main] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), task(pid)]);
    const sums: Record<string, number> = {};
    for (const [name, tids] of Object.entries(groups)) {
      sums[name] = (await Promise.all(tids.map(task))).reduce((a, b) => a + b, 0);
    }
    return { process: statCpuSeconds(all), mainThread: main, groups: sums };
  } catch {
    return undefined;
  }
}

/** VmRSS and VmHWM (peak since the process started) of `pid`, in bytes. */
export function memoryOf(pid: number): { rss: number; hwm: number } | undefined {
  try {
    // Synchronous on purpose: /proc only, never a FUSE mount, and it keeps the sampler simple.
    const text = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kib = (k: string) =>
      Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN) * 1024;
    return { rss: kib('VmRSS'), hwm: kib('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Samples a process's RSS every `ms` until stopped; the peak is max(sampled RSS, VmHWM). */
export class RssSampler {
  private peak = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly pid: number,
    ms = 100,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), ms);
  }

  private sample(): void {
    const m = memoryOf(this.pid);
    if (m && Number.isFinite(m.rss)) this.peak = Math.max(this.peak, m.rss);
  }

  /** Stops sampling; returns the peak RSS in bytes (0 when the process could not be read). */
  stop(): number {
    clearInterval(this.timer);
    this.sample();
    const hwm = memoryOf(this.pid)?.hwm;
    return Math.max(this.peak, hwm !== undefined && Number.isFinite(hwm) ? hwm : 0);
  }
}

/** Mount points listed in /proc/self/mountinfo (octal escapes decoded). */
export async function mountPoints(): Promise<Set<string>> {
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length > 4)
      out.add(f[4]!.replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(Number.parseInt(o, 8))));
  }
  return out;
}

/** Lazily detaches a (stale) FUSE mount; ignores "not mounted". */
export async function detachIfMounted(path: string): Promise<void> {
  if (!(await mountPoints()).has(path)) return;
  await exec('fusermount', ['-u', '-z', path]).catch(() => exec('umount', ['-l', path]).catch(() => {}));
}

/** Drops `path` from the page cache (GNU dd iflag=nocache count=0); best effort. */
export async function dropFromPageCache(path: string): Promise<void> {
  await exec('dd', [`if=${path}`, 'iflag=nocache', 'count=0', 'status=none']).catch(() => {});
}

/** Reads `path` once so it is in the page cache. */
export async function warmPageCache(path: string): Promise<void> {
  await exec('dd', [`if=${path}`, 'of=/dev/null', `bs=${1 << 20}`, 'status=none']);
}
