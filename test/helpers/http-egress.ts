/**
 * Test fixtures for the HTTP egress proxy: a table-driven fake policy engine (a stand-in
 * for policy/egress, developed on a parallel branch), openssl-made certificates for
 * loopback TLS upstreams, upstreams that record what reached them, a raw-socket client,
 * the real command-line clients, and the AWS Encryption SDK as the sealing oracle.
 *
 * Every address dialed is loopback: documentation addresses appear only as DNS answers,
 * and the dial hook maps the ones a test declares "public" onto a loopback listener.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildClient, CommitmentPolicy } from '@aws-crypto/client-node';
import type {
  AddressClass,
  InspectSettings,
  RequestDecision,
  RuleMode,
  TlsSettings,
} from '../../policy/egress/types.js';
import type { Keyring } from '../../proxies/core/index.js';
import type { EgressLimits } from '../../proxies/http/limits.js';
import type { EgressEngine } from '../../proxies/http/ports.js';

export interface FakeRule {
  host: string;
  verdict?: 'allow' | 'report' | 'deny';
  mode?: RuleMode;
  methods?: string[];
  /** Path prefixes. */
  paths?: string[];
  tls?: TlsSettings;
  inspect?: InspectSettings;
  dek?: string;
}

function classify(ip: string): AddressClass {
  if (ip.startsWith('127.') || ip === '::1') return 'loopback';
  if (ip.startsWith('10.') || ip.startsWith('192.168.')) return 'private';
  if (ip === '169.254.169.254') return 'cloud-metadata';
  if (ip.startsWith('203.0.113.') || ip.startsWith('198.51.100.')) return 'documentation';
  return 'public';
}

/**
 * First matching rule wins; no match is a deny. Addresses: only those in `allowAddresses`
 * (ip or ip:port) and those in `publicForTest` (documentation addresses a test maps onto
 * loopback in its dial hook) may be dialed.
 */
export function fakeEngine(o: {
  rules: FakeRule[];
  allowAddresses?: string[];
  publicForTest?: string[];
  limits?: Partial<EgressLimits>;
  interceptsTls?: boolean;
  throwOn?: string;
}): EgressEngine & { addressChecks: string[] } {
  const addressChecks: string[] = [];
  return {
    digest: 'f'.repeat(64),
    limits: o.limits ?? {},
    interceptsTls: o.interceptsTls ?? o.rules.some((r) => (r.mode ?? 'open') !== 'open' || !!r.inspect),
    addressChecks,
    decideRequest(req): RequestDecision {
      const host = req.host.toLowerCase().replace(/\.$/, '');
      if (o.throwOn === host) throw new Error('boom');
      for (const [i, r] of o.rules.entries()) {
        if (r.host !== '*' && r.host !== host) continue;
        if (r.methods && req.method !== 'CONNECT' && !r.methods.includes(req.method)) continue;
        if (r.paths && req.path !== undefined && !r.paths.some((p) => req.path?.startsWith(p))) continue;
        const verdict = r.verdict ?? 'allow';
        return {
          verdict,
          rule: `${verdict === 'deny' ? 'deny' : 'allow'}[${i}]`,
          reason: `${host} ${verdict === 'deny' ? 'is denied' : 'is allowed'} by rule ${i}`,
          host,
          mode: r.mode ?? 'open',
          ...(r.tls ? { tls: r.tls } : {}),
          ...(r.inspect ? { inspect: r.inspect } : {}),
          ...(r.dek ? { dek: r.dek } : {}),
        };
      }
      return { verdict: 'deny', rule: 'default-deny', reason: `no rule allows ${host}`, host, mode: 'open' };
    },
    decideAddress(ip, port, self) {
      addressChecks.push(`${ip}:${port}`);
      if (self.some((s) => s.host === ip && s.port === port))
        return { allowed: false, ip, class: 'self', reason: 'one of Membrane’s own listeners' };
      if (o.publicForTest?.includes(ip)) return { allowed: true, ip, class: 'public', reason: 'public' };
      const cls = classify(ip);
      const allowed = !!o.allowAddresses?.some((a) => a === ip || a === `${ip}:${port}`);
      return {
        allowed,
        ip,
        class: cls,
        reason: allowed ? 'allowAddresses' : `${cls} addresses are not dialed`,
      };
    },
  };
}

export interface Certs {
  dir: string;
  upstreamCa: string;
  upstreamKey: string;
  upstreamCert: string;
  runCa: string;
  runLeafKey: string;
  runLeafCert: string;
  cleanup(): void;
}

function openssl(args: string[], cwd: string) {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** Two CAs (the upstream's, and a stand-in run CA), each with one leaf for the test names, localhost, 127.0.0.1. */
export function makeCerts(): Certs {
  const dir = mkdtempSync(join(tmpdir(), 'membrane-http-certs-'));
  const ext =
    'subjectAltName=DNS:api.test,DNS:open.test,DNS:inspect.test,DNS:secure.test,DNS:report.test,DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n';
  writeFileSync(join(dir, 'leaf.ext'), ext);
  for (const p of ['up', 'run']) {
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${p}-ca.key`], dir);
    openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        `${p}-ca.key`,
        '-days',
        '2',
        '-subj',
        `/CN=${p} test CA`,
        '-out',
        `${p}-ca.pem`,
      ],
      dir,
    );
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${p}-leaf.key`], dir);
    openssl(['req', '-new', '-key', `${p}-leaf.key`, '-subj', '/CN=api.test', '-out', `${p}-leaf.csr`], dir);
    openssl(
      [
        'x509',
        '-req',
        '-in',
        `${p}-leaf.csr`,
        '-CA',
        `${p}-ca.pem`,
        '-CAkey',
        `${p}-ca.key`,
        '-CAcreateserial',
        '-days',
        '2',
        '-extfile',
        'leaf.ext',
        '-out',
        `${p}-leaf.pem`,
      ],
      dir,
    );
  }
  const r = (f: string) => readFileSync(join(dir, f), 'utf8');
  return {
    dir,
    upstreamCa: r('up-ca.pem'),
    upstreamKey: r('up-leaf.key'),
    upstreamCert: r('up-leaf.pem'),
    runCa: r('run-ca.pem'),
    runLeafKey: r('run-leaf.key'),
    runLeafCert: r('run-leaf.pem'),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

const esdk = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

export interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export interface Upstream {
  readonly port: number;
  readonly host: string;
  readonly seen: Seen[];
  connections: number;
  /** Every request-body byte that arrived, complete requests or not. */
  received(): Buffer;
  close(): Promise<void>;
}

export type Handler = (req: IncomingMessage, body: Buffer, res: ServerResponse) => void;

const echo: Handler = (req, body, res) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`hello ${req.method} ${req.url} ${body.length}`);
};

/** An HTTP (or HTTPS, with the upstream CA's leaf) server on loopback recording requests and connections. */
export async function startUpstream(
  o: { host?: string; port?: number; certs?: Certs; handler?: Handler } = {},
): Promise<Upstream> {
  const seen: Seen[] = [];
  const sockets = new Set<Socket>();
  const raw: Buffer[] = [];
  const onReq = (req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      parts.push(c);
      raw.push(Buffer.from(c));
    });
    req.on('error', () => {});
    req.on('end', () => {
      const body = Buffer.concat(parts);
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      (o.handler ?? echo)(req, body, res);
    });
  };
  const server: Server = o.certs
    ? createHttpsServer({ key: o.certs.upstreamKey, cert: o.certs.upstreamCert }, onReq)
    : createHttpServer(onReq);
  const up = {
    seen,
    connections: 0,
    received: () => Buffer.concat(raw),
    host: o.host ?? '127.0.0.1',
    port: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  server.on('connection', (s: Socket) => {
    up.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(o.port ?? 0, up.host, resolve));
  up.port = (server.address() as AddressInfo).port;
  return up;
}

/** Sends raw bytes to the proxy; resolves with the first response head (status + headers) and what follows. */
export function rawRequest(
  port: number,
  bytes: Buffer | string,
  timeoutMs = 20_000,
): Promise<{ status: number; head: string }> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port });
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no response within ${timeoutMs} ms; got ${JSON.stringify(got.toString('latin1'))}`));
    }, timeoutMs);
    s.on('data', (c: Buffer) => {
      got = Buffer.concat([got, c]);
      const end = got.indexOf('\r\n\r\n');
      if (end >= 0) {
        clearTimeout(timer);
        s.destroy();
        const head = got.subarray(0, end).toString('latin1');
        resolve({ status: Number(head.split(' ')[1]), head });
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      if (got.indexOf('\r\n\r\n') < 0)
        reject(new Error(`closed without a response: ${JSON.stringify(got.toString('latin1'))}`));
    });
    s.write(bytes);
  });
}

export function header(head: string, name: string): string | undefined {
  const re = new RegExp(`^${name}:\\s*(.*)$`, 'im');
  return re.exec(head)?.[1]?.trim();
}

/** Runs a command-line client; resolves with its exit code and output (never rejects on exit status). */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
    const p = spawn(cmd, args, {
      env: { PATH: process.env.PATH, HOME: process.env.HOME, ...env },
      stdio: 'pipe',
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (c) => {
      stdout += c;
    });
    p.stderr.on('data', (c) => {
      stderr += c;
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Decrypts what an upstream received, with the SDK as the oracle. */
export async function oracleDecrypt(keyring: Keyring, body: Buffer) {
  return esdk.decrypt(keyring, body);
}
