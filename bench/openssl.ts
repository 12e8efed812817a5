/**
 * The machine's AES-GCM ceiling: `openssl speed -evp aes-256-gcm` as a subprocess.
 * It runs one core, in-cache buffers, no framing and no allocation, so it bounds
 * what any implementation on this CPU can do per core. We quote its 16 KiB column
 * (the largest block it measures by default) as "the openssl single-core figure".
 */
import { spawn } from 'node:child_process';

export interface OpensslBlock {
  bytes: number;
  bytesPerSecond: number;
}

export interface OpensslSpeed {
  version: string;
  blocks: OpensslBlock[];
}

export type OpensslResult = ({ ok: true } & OpensslSpeed) | { ok: false; reason: string };

/**
 * Parses the human-readable table openssl prints on stdout:
 *   The 'numbers' are in 1000s of bytes per second processed.
 *   type             16 bytes     64 bytes ...  16384 bytes
 *   AES-256-GCM      34912.85k   141146.70k ... 4382621.70k
 * Values above 10000 carry a 'k' (thousands); smaller ones are printed as is,
 * still in thousands of bytes per second.
 */
export function parseOpensslSpeed(stdout: string, algorithm = 'AES-256-GCM'): OpensslBlock[] {
  const lines = stdout.split(/\r?\n/);
  const header = lines.find((l) => /^type\s/.test(l));
  if (!header) throw new Error("openssl speed output has no 'type' header line");
  const sizes = [...header.matchAll(/(\d+)\s+bytes/g)].map((m) => Number(m[1]));
  const row = lines.find((l) => l.toLowerCase().startsWith(algorithm.toLowerCase()));
  if (!row) throw new Error(`openssl speed output has no ${algorithm} row`);
  const values = row
    .slice(algorithm.length)
    .trim()
    .split(/\s+/)
    .map((v) => {
      const m = /^(\d+(?:\.\d+)?)(k?)$/.exec(v);
      if (!m) throw new Error(`openssl speed value '${v}' is not a number`);
      return Number(m[1]) * 1000;
    });
  if (sizes.length === 0 || values.length !== sizes.length) {
    throw new Error(`openssl speed output has ${sizes.length} block sizes but ${values.length} values`);
  }
  return sizes.map((bytes, i) => ({ bytes, bytesPerSecond: values[i]! }));
}

function capture(
  cmd: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string; error?: Error }> {
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    } catch (e) {
      resolve({ code: null, stdout, stderr, error: e as Error });
      return;
    }
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    child.on('error', (e) => resolve({ code: null, stdout, stderr, error: e }));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export async function opensslVersion(): Promise<string | null> {
  const r = await capture('openssl', ['version'], 10_000);
  return r.code === 0 ? r.stdout.trim() : null;
}

/** Runs the ceiling measurement; `seconds` per block size (openssl measures 6 sizes). */
export async function runOpensslSpeed(seconds: number): Promise<OpensslResult> {
  const version = await opensslVersion();
  if (!version) return { ok: false, reason: "the 'openssl' command is not installed or does not run" };
  const args = ['speed', '-evp', 'aes-256-gcm', '-seconds', String(seconds)];
  const r = await capture('openssl', args, (seconds * 6 + 60) * 1000);
  if (r.error || r.code !== 0) {
    const why = r.error?.message ?? `exit code ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' ')}`;
    return { ok: false, reason: `'openssl ${args.join(' ')}' failed (${why})` };
  }
  try {
    return { ok: true, version, blocks: parseOpensslSpeed(r.stdout) };
  } catch (e) {
    return { ok: false, reason: `could not parse openssl speed output: ${(e as Error).message}` };
  }
}
