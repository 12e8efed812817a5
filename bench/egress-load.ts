/**
 * The moving parts of `membrane bench egress`: the upstream process, the proxies under test
 * (tinyproxy from Debian on a generated config, Membrane's `membrane proxy http` on a
 * generated policy) each in a process of its own, wrk for keep-alive request load (a Lua
 * script makes it send absolute-form proxy requests and print its figures as JSON), and a
 * CONNECT bulk client. Everything listens and dials on 127.0.0.1 only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { UpstreamPorts } from './egress-upstream.js';

/** A child process we started and must stop; `pid` for /proc CPU sampling. */
export interface Child {
  readonly pid: number;
  stop(): Promise<void>;
}

function stopper(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): () => Promise<void> {
  return () =>
    new Promise<void>((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      const kill = setTimeout(() => child.kill('SIGKILL'), 5_000);
      child.once('exit', () => {
        clearTimeout(kill);
        done();
      });
      child.kill(signal);
    });
}

/** Waits for the first stdout line matching `re`; rejects on exit or after `ms`. */
function waitForLine(child: ChildProcess, re: RegExp, what: string, ms = 20_000): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => finish(new Error(`${what}: not ready after ${ms} ms\n${err}`)), ms);
    const onData = (d: string) => {
      out += d;
      const m = re.exec(out);
      if (m) finish(undefined, m);
    };
    const onErr = (d: string) => {
      err = (err + d).slice(-4000);
    };
    const onExit = (code: number | null) =>
      finish(new Error(`${what} exited (${code}) before it was ready\n${err}`));
    const finish = (e?: Error, m?: RegExpExecArray) => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.off('exit', onExit);
      if (e) reject(e);
      else resolve(m as RegExpExecArray);
    };
    child.stdout?.setEncoding('utf8').on('data', onData);
    child.stderr?.setEncoding('utf8').on('data', onErr);
    child.once('exit', onExit);
  });
}

export async function startUpstream(responseBytes: number): Promise<Child & { ports: UpstreamPorts }> {
  const script = fileURLToPath(new URL('./egress-upstream.js', import.meta.url));
  const child = spawn(process.execPath, [script, String(responseBytes)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const m = await waitForLine(child, /^(\{.*\})\n/m, 'bench upstream');
  const ports = JSON.parse(m[1] as string) as UpstreamPorts;
  return {
    pid: child.pid as number,
    ports,
    stop: async () => {
      child.stdin?.end();
      await stopper(child)();
    },
  };
}

/** A port that was free a moment ago (tinyproxy takes a fixed port, not 0). */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((ok) => s.close(() => ok()));
  return port;
}

/** tinyproxy in the foreground (-d) on a generated config: loopback only, no Via header, quiet log. */
export async function startTinyproxy(dir: string): Promise<Child & { port: number }> {
  const port = await freePort();
  const conf = join(dir, 'tinyproxy.conf');
  const lines = [
    `Port ${port}`,
    'Listen 127.0.0.1',
    'Timeout 120',
    'MaxClients 256',
    // No LogFile or PidFile: as root tinyproxy drops privileges and could not write our 0700 dir.
    'LogLevel Critical',
    'Allow 127.0.0.1',
    'DisableViaHeader Yes',
    // No ConnectPort line: CONNECT to any port (the bulk sink has an ephemeral one).
  ];
  // As root, tinyproxy must be told whom to drop privileges to.
  if (process.getuid?.() === 0) lines.push('User nobody', 'Group nogroup');
  await writeFile(conf, `${lines.join('\n')}\n`);
  const child = spawn('tinyproxy', ['-d', '-c', conf], { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise<never>((_, reject) => {
    child.once('error', reject);
    child.once('exit', (c) => reject(new Error(`tinyproxy exited (${c})`)));
  });
  exited.catch(() => {});
  await Promise.race([waitForPort(port), exited]);
  return { pid: child.pid as number, port, stop: stopper(child) };
}

async function waitForPort(port: number, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((done) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        done(true);
      });
      s.once('error', () => done(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** `membrane proxy http` on `policyFile`, any free loopback port (proxy auth off, as the CLI defaults). */
export async function startMembraneProxy(
  policyFile: string,
  cpuProfDir?: string,
): Promise<Child & { port: number }> {
  const bin = fileURLToPath(new URL('../../bin/membrane.mjs', import.meta.url));
  const prof = cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', cpuProfDir] : [];
  const child = spawn(
    process.execPath,
    [...prof, bin, 'proxy', 'http', '--policy', policyFile, '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const m = await waitForLine(child, /^listening 127\.0\.0\.1:(\d+)$/m, 'membrane proxy http');
  return { pid: child.pid as number, port: Number(m[1]), stop: stopper(child) };
}

// ------------------------------------------------------------------ wrk

export interface WrkJob {
  /** Where wrk connects: the upstream itself (direct) or a proxy. */
  readonly connectPort: number;
  readonly upstreamPort: number;
  /** Absolute-form request target (through a proxy) or origin-form (direct). */
  readonly viaProxy: boolean;
  readonly method: 'GET' | 'POST';
  /** File holding the POST body. */
  readonly bodyFile?: string;
  readonly connections: number;
  readonly seconds: number;
  readonly scriptDir: string;
}

export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Connect, write and timeout errors and non-2xx/3xx answers: any of them makes the run invalid. */
  readonly errors: number;
  /**
   * Connections the server closed (wrk counts them as read errors). A proxy without client
   * keep-alive (tinyproxy) closes after every answer; wrk reconnects, the answer counted.
   */
  readonly closes: number;
}

const lua = (j: WrkJob) => `-- generated by membrane bench egress
wrk.method = "${j.method}"
wrk.path = "${j.viaProxy ? `http://127.0.0.1:${j.upstreamPort}/bench` : '/bench'}"
wrk.headers["Host"] = "127.0.0.1:${j.upstreamPort}"
${
  j.bodyFile
    ? `local f = assert(io.open("${j.bodyFile}", "rb"))
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"`
    : ''
}
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%.0f,"duration_us":%.0f,"errors":%.0f,"closes":%.0f,"p50_us":%.0f,"p99_us":%.0f}\\n',
    summary.requests, summary.duration, e.connect + e.write + e.status + e.timeout, e.read,
    latency:percentile(50), latency:percentile(99)))
end
`;

let scriptSeq = 0;

export async function runWrk(j: WrkJob): Promise<WrkResult> {
  const script = join(j.scriptDir, `wrk-${++scriptSeq}.lua`);
  await writeFile(script, lua(j));
  const args = [
    '-t1',
    `-c${j.connections}`,
    `-d${j.seconds}s`,
    '--timeout',
    '10s',
    '-s',
    script,
    `http://127.0.0.1:${j.connectPort}/`,
  ];
  const out = await new Promise<string>((resolve, reject) => {
    const c = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let o = '';
    let e = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (o += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (e += d));
    c.once('error', reject);
    c.once('exit', (code) =>
      code === 0 ? resolve(o) : reject(new Error(`wrk exited ${code}: ${e.trim() || o.trim()}`)),
    );
  });
  const m = /WRKJSON (\{.*\})/.exec(out);
  if (!m) throw new Error(`wrk printed no figures:\n${out}`);
  const r = JSON.parse(m[1] as string) as Record<string, number>;
  const seconds = (r.duration_us as number) / 1e6;
  return {
    requests: r.requests as number,
    seconds,
    requestsPerSecond: (r.requests as number) / seconds,
    p50Ms: (r.p50_us as number) / 1000,
    p99Ms: (r.p99_us as number) / 1000,
    errors: r.errors as number,
    closes: r.closes as number,
  };
}

// ------------------------------------------------------------------ CONNECT bulk

const CHUNK = Buffer.alloc(1024 * 1024, 0x5a);

function connected(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.setNoDelay(true);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Sends CONNECT and waits for a 2xx answer; the socket is then a byte pipe to the target. */
async function openTunnel(proxyPort: number, targetPort: number): Promise<Socket> {
  const s = await connected(proxyPort);
  s.write(`CONNECT 127.0.0.1:${targetPort} HTTP/1.1\r\nHost: 127.0.0.1:${targetPort}\r\n\r\n`);
  await new Promise<void>((resolve, reject) => {
    let head = '';
    const onData = (d: Buffer) => {
      head += d.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.off('error', reject);
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      if (!status || !status[1]!.startsWith('2')) {
        s.destroy();
        reject(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`));
        return;
      }
      if (end + 4 < head.length) {
        s.destroy();
        reject(new Error('bytes after the CONNECT answer before we sent anything'));
        return;
      }
      s.pause();
      resolve();
    };
    s.on('data', onData);
    s.once('error', reject);
  });
  return s;
}

/**
 * Uploads `bytes` to the sink, directly or through a proxy's CONNECT tunnel; resolves with
 * the seconds from the first byte written to the sink's acknowledgement (tunnel set-up excluded).
 */
export async function connectBulk(sinkPort: number, bytes: number, proxyPort?: number): Promise<number> {
  const s = proxyPort === undefined ? await connected(sinkPort) : await openTunnel(proxyPort, sinkPort);
  try {
    const t0 = process.hrtime.bigint();
    const acked = new Promise<void>((resolve, reject) => {
      s.once('data', () => resolve());
      s.once('error', reject);
      s.once('close', () => reject(new Error('the sink closed before acknowledging')));
    });
    acked.catch(() => {}); // observed below; a failure while writing must not be unhandled
    s.resume();
    const head = Buffer.alloc(8);
    head.writeBigUInt64BE(BigInt(bytes));
    s.write(head);
    for (let left = bytes; left > 0; left -= CHUNK.length) {
      const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
      if (!s.write(piece)) await Promise.race([new Promise((r) => s.once('drain', r)), acked]);
    }
    await acked;
    return Number(process.hrtime.bigint() - t0) / 1e9;
  } finally {
    s.destroy();
  }
}

/** wrk's version line; wrk -v exits 1 after printing it, so only a failure to run means "missing". */
export function wrkVersion(): Promise<string | null> {
  return new Promise((resolve) => {
    const c = spawn('wrk', ['-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    c.once('error', () => resolve(null));
    c.once('close', () => resolve(/^wrk /.test(out) ? (out.split('\n')[0] ?? '').trim() : null));
  });
}
