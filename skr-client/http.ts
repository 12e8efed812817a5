/**
 * The one HTTP path of skr-client: undici with timeouts, bounded retries with
 * exponential backoff and jitter on 429/5xx/connection resets, and failures
 * mapped to typed, actionable errors naming the service. Bodies and headers are
 * never echoed into errors beyond a short, secret-free excerpt (service error
 * JSON like {"error":{"code","message"}}), and Authorization never is.
 */

import { BlockList, isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher, request } from 'undici';
import { MembraneError } from '../policy/errors.js';

export interface HttpOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH';
  headers?: Record<string, string>;
  body?: string | Buffer;
  /**
   * Per attempt, for the whole exchange (connect, headers and the complete body): a server
   * dripping one byte every few seconds cannot hold the caller past it. Default 15 s.
   */
  timeoutMs?: number;
  /** Largest response body accepted; more is HTTP_BODY_TOO_LARGE (not retried). Default 1 MiB. */
  maxBodyBytes?: number;
  /**
   * Allow http:// to any host. Default false: plain http only to loopback (127.0.0.0/8, ::1,
   * the local emulators); anything else must be https (bearer tokens, keys and attestation
   * results must not cross a network in cleartext).
   */
  allowInsecureHttp?: boolean;
  /** Attempts after the first on 429/5xx/network errors. Default 3. */
  retries?: number;
  /** Extra PEM trust anchors (e.g. the local emulators' CA). */
  ca?: string | string[];
  /** Statuses that are returned to the caller instead of thrown (e.g. 401 for a challenge). */
  accept?: number[];
  /** What to tell the operator to check when the call fails (appended to the message). */
  hint?: string;
}

export interface HttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  json<T = unknown>(): T;
  text(): string;
}

const agents = new Map<string, Agent>();
function dispatcherFor(ca: string | string[] | undefined, timeoutMs: number): Dispatcher | undefined {
  if (!ca) return undefined;
  const key = `${timeoutMs}|${Array.isArray(ca) ? ca.join('') : ca}`;
  let a = agents.get(key);
  if (!a) {
    // Extra anchors are added to (not substituted for) the system roots.
    const roots = (Array.isArray(ca) ? ca : [ca]).concat(rootCertificates);
    a = new Agent({ connect: { ca: roots, timeout: timeoutMs } });
    agents.set(key, a);
  }
  return a;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const HttpErrorCode = {
  STATUS: 'HTTP_STATUS',
  NETWORK: 'HTTP_NETWORK',
  TIMEOUT: 'HTTP_TIMEOUT',
  BAD_BODY: 'HTTP_BAD_BODY',
  BODY_TOO_LARGE: 'HTTP_BODY_TOO_LARGE',
  INSECURE_URL: 'HTTP_INSECURE_URL',
} as const;

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;

/** Loopback only: 127.0.0.0/8, ::1 and localhost (the emulators' hosts). */
const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
export function isLoopbackHost(hostname: string): boolean {
  // WHATWG URL has already normalised IPv4 spellings (0x7f.1 -> 127.0.0.1) and bracketed IPv6.
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  const family = isIP(h);
  return family !== 0 && LOOPBACK.check(h, family === 4 ? 'ipv4' : 'ipv6');
}

/** Refuses http:// off loopback (and any scheme but http/https). */
export function assertSecureUrl(service: string, url: URL, allowInsecureHttp = false): void {
  const shown = `${url.protocol}//${url.host}${url.pathname}`;
  if (url.protocol === 'https:') return;
  if (url.protocol === 'http:' && (allowInsecureHttp || isLoopbackHost(url.hostname))) return;
  throw new MembraneError(
    HttpErrorCode.INSECURE_URL,
    url.protocol === 'http:'
      ? `${service} must be reached over https:// (plain http is accepted only on loopback, for the local emulators)`
      : `${service} URL must be https://`,
    { where: shown },
  );
}

/** Reads a body to the end, refusing more than `max` bytes (the stream is destroyed at once). */
async function readCappedBody(
  body: Dispatcher.ResponseData['body'],
  max: number,
  service: string,
  where: string,
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of body) {
    const b = chunk as Buffer;
    n += b.length;
    if (n > max) {
      body.destroy();
      throw new MembraneError(
        HttpErrorCode.BODY_TOO_LARGE,
        `${service} sent a response body larger than ${max} bytes; refusing it`,
        { where },
      );
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks, n);
}

/** Short, secret-free excerpt of an error body for messages. */
function excerpt(body: Buffer): string {
  const text = body.toString('utf8', 0, Math.min(body.length, 600));
  try {
    const j = JSON.parse(text) as { error?: { code?: string; message?: string } | string; message?: string };
    if (typeof j.error === 'object' && j.error)
      return [j.error.code, j.error.message].filter(Boolean).join(': ');
    if (typeof j.error === 'string') return j.error;
    if (typeof j.message === 'string') return j.message;
  } catch {
    /* not JSON */
  }
  return text.replace(/\s+/g, ' ').slice(0, 200);
}

function statusHint(status: number): string {
  if (status === 401) return 'check the credential/token and its audience';
  if (status === 403)
    return 'the identity is authenticated but not authorised (access policy / RBAC / release policy)';
  if (status === 404) return 'check the URL, key/secret name and version';
  if (status === 429) return 'the service is throttling; retries were exhausted';
  if (status >= 500) return 'the service failed; retries were exhausted';
  return 'check the request';
}

/**
 * Calls `url` for `service` (a human name such as "Azure Key Vault release").
 * Throws MembraneError code `HTTP_STATUS` / `HTTP_NETWORK` / `HTTP_TIMEOUT`.
 */
export async function http(service: string, url: string, opts: HttpOptions = {}): Promise<HttpResponse> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const retries = opts.retries ?? 3;
  const where = new URL(url);
  const shownUrl = `${where.origin}${where.pathname}`; // never the query (SAS tokens live there)
  assertSecureUrl(service, where, opts.allowInsecureHttp);
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  let lastErr: (MembraneError & { status?: number; retryAfterMs?: number }) | undefined;
  for (let attempt = 0; attempt <= retries; attempt++) {
    if (attempt > 0) {
      const backoff = Math.min(8000, 200 * 2 ** (attempt - 1)) * (0.5 + Math.random());
      await sleep(lastErr?.retryAfterMs ?? backoff);
    }
    let res: Dispatcher.ResponseData;
    let body: Buffer;
    // headersTimeout/bodyTimeout are idle timers (reset by every byte): the deadline bounds the whole attempt.
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      res = await request(url, {
        method: opts.method ?? 'GET',
        headers: opts.headers,
        body: opts.body,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
        signal: deadline,
        dispatcher: dispatcherFor(opts.ca, timeoutMs),
      });
      body = await readCappedBody(res.body, maxBody, service, shownUrl);
    } catch (e) {
      if (e instanceof MembraneError) throw e; // too large: retrying would only fetch it again
      // Network-level failure: always retryable.
      const code = (e as { code?: string }).code ?? '';
      const timeout = /TIMEOUT/i.test(code) || deadline.aborted;
      lastErr = new MembraneError(
        timeout ? 'HTTP_TIMEOUT' : 'HTTP_NETWORK',
        `${service} ${timeout ? `did not answer within ${timeoutMs} ms` : `could not be reached (${code || (e as Error).message})`} — ${opts.hint ?? 'check the endpoint URL, network and TLS trust (--ca)'}`,
        { where: shownUrl, cause: e },
      );
      continue;
    }
    const status = res.statusCode;
    if ((status >= 200 && status < 300) || opts.accept?.includes(status)) {
      return {
        status,
        headers: res.headers,
        body,
        text: () => body.toString('utf8'),
        json: <T>() => {
          try {
            return JSON.parse(body.toString('utf8')) as T;
          } catch (e) {
            throw new MembraneError('HTTP_BAD_BODY', `${service} returned a body that is not JSON`, {
              where: shownUrl,
              cause: e,
            });
          }
        },
      };
    }
    const detail = excerpt(body);
    lastErr = Object.assign(
      new MembraneError(
        'HTTP_STATUS',
        `${service} answered HTTP ${status}${detail ? `: ${detail}` : ''} — ${opts.hint ?? statusHint(status)}`,
        { where: shownUrl },
      ),
      { status },
    );
    const ra = Number(res.headers['retry-after']);
    if (Number.isFinite(ra) && ra >= 0) lastErr.retryAfterMs = Math.min(ra * 1000, 30_000);
    if (status !== 429 && status < 500) throw lastErr; // the caller's request is wrong: retrying cannot help
  }
  throw lastErr!;
}

/** Error status, when `e` is an HTTP_STATUS error. */
export function httpStatusOf(e: unknown): number | undefined {
  return e instanceof MembraneError && e.code === 'HTTP_STATUS'
    ? (e as MembraneError & { status?: number }).status
    : undefined;
}
