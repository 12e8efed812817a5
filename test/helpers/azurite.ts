/**
 * Starts the Azurite blob service (the npm devDependency, no network needed) on
 * a free loopback port with a throw-away workspace, for tests and the demo.
 * Telemetry is disabled: Azurite would otherwise try to phone home.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The emulator's well-known development account (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface Azurite {
  /** Path-style account endpoint: http://127.0.0.1:PORT/devstoreaccount1 */
  url: string;
  account: string;
  key: string;
  port: number;
  stop(): Promise<void>;
}

/** Walks up from this file to the directory holding node_modules/.bin/azurite-blob. */
function azuriteBin(): string {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  for (let i = 0; i < 6; i++) {
    const bin = join(dir, 'node_modules', '.bin', 'azurite-blob');
    if (existsSync(bin)) return realpathSync(bin);
    dir = join(dir, '..');
  }
  throw new Error(
    'azurite-blob not found in node_modules/.bin: run npm install (devDependency azurite@3.35.0)',
  );
}

export async function startAzurite(opts: { timeoutMs?: number } = {}): Promise<Azurite> {
  const location = await mkdtemp(join(tmpdir(), 'membrane-azurite-'));
  const child: ChildProcess = spawn(
    process.execPath,
    [
      azuriteBin(),
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      '0',
      '--location',
      location,
      '--silent',
      '--disableTelemetry',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: withoutCustomAccounts() },
  );
  let output = '';
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await rm(location, { recursive: true, force: true });
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`Azurite did not start within ${opts.timeoutMs ?? 30_000} ms:\n${output}`)),
        opts.timeoutMs ?? 30_000,
      );
      const onData = (d: Buffer) => {
        output += d.toString();
        const m = /listens on https?:\/\/[^:]+:(\d+)/.exec(output);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      };
      child.stdout?.on('data', onData);
      child.stderr?.on('data', onData);
      child.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`Azurite exited early (${code ?? sig}):\n${output}`));
      });
    });
    await waitAnswering(port);
    return {
      url: `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`,
      account: AZURITE_ACCOUNT,
      key: AZURITE_KEY,
      port,
      stop,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** AZURITE_ACCOUNTS would replace the well-known account the tests rely on. */
function withoutCustomAccounts(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.AZURITE_ACCOUNTS;
  return env;
}

/** Any HTTP answer (even 400/403) means the service is up. */
async function waitAnswering(port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const req = request(
        { host: '127.0.0.1', port, path: `/${AZURITE_ACCOUNT}?comp=list`, method: 'GET' },
        (res) => {
          res.resume();
          resolve(true);
        },
      );
      req.on('error', () => resolve(false));
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Azurite on port ${port} does not answer`);
}
