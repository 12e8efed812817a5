/**
 * Minimal HTTPS plumbing shared by the emulators: a loopback server with the
 * CA-issued TLS chain, JSON bodies with a size cap, and Azure-style error
 * bodies `{error:{code,message}}`. Handlers throw HttpError to answer with a
 * status; anything else becomes a 500 without internals.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { LeafMaterial } from './ca.js';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

export interface Request {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  body: Buffer;
  json(): unknown;
}

export interface Response {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export type Handler = (req: Request) => Promise<Response>;

const MAX_BODY = 1024 * 1024;

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function startHttpsServer(opts: {
  tls: LeafMaterial;
  host: string;
  port: number;
  handler: Handler;
}): Promise<RunningServer> {
  const server: Server = createServer({ key: opts.tls.keyPem, cert: opts.tls.certChainPem }, (req, res) => {
    void serve(req, res, opts.handler);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  return {
    url: `https://${host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serve(req: IncomingMessage, res: ServerResponse, handler: Handler): Promise<void> {
  try {
    const body = await readBody(req);
    const u = new URL(req.url ?? '/', 'https://emulator.invalid');
    const out = await handler({
      method: req.method ?? 'GET',
      path: u.pathname.replace(/\/{2,}/g, '/'),
      query: u.searchParams,
      headers: req.headers,
      body,
      json: () => {
        try {
          return JSON.parse(body.toString('utf8'));
        } catch {
          throw new HttpError(400, 'BadParameter', 'the request body is not valid JSON');
        }
      },
    });
    send(res, out.status, out.body, out.headers);
  } catch (e) {
    if (e instanceof HttpError)
      send(res, e.status, { error: { code: e.code, message: e.message } }, e.headers);
    else send(res, 500, { error: { code: 'InternalError', message: 'emulator internal error' } });
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'RequestTooLarge', `request body exceeds ${MAX_BODY} bytes`));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  if (res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
    ...headers,
  });
  res.end(text);
}
