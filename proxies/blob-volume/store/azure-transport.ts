/**
 * One HTTP path to one Azure Blob container: URL building (both the
 * `https://<account>.blob.core.windows.net` and the emulator's path-style
 * `http://host:port/<account>` endpoints), the four auth modes, bounded retries
 * with exponential backoff + jitter on 408/429/5xx and connection resets
 * (honouring Retry-After), and status -> StoreErrorCode mapping with actionable,
 * secret-free messages. URLs in messages never carry a query string (SAS tokens
 * live there), and neither keys, tokens nor signatures appear anywhere in them.
 * One undici Pool per transport keeps connections alive across requests.
 */
import { type Dispatcher, Pool } from 'undici';
import { MembraneError } from '../../../policy/errors.js';
import { type SharedKeySigner, sharedKeySigner } from './azure-sharedkey.js';
import { parseError } from './azure-xml.js';
import { StoreErrorCode } from './types.js';

/** REST version we speak (supported by Azure and by Azurite 3.35 without --skipApiVersionCheck). */
export const AZURE_API_VERSION = '2023-11-03';

/** Config errors (bad URL, container name, SAS placement) thrown by the constructor. */
export const STORE_CONFIG = 'STORE_CONFIG';

export type AzureAuth =
  | { kind: 'sas'; sas: string }
  | { kind: 'shared-key'; account: string; key: string /* base64 */ }
  | { kind: 'bearer'; token: () => Promise<string> }
  | { kind: 'anonymous' };

export interface TransportOptions {
  /** Attempts per request including the first. Default 5. */
  maxAttempts?: number;
  /** First backoff step. Default 200 ms; doubles each attempt, with jitter. */
  baseDelayMs?: number;
  /** Backoff ceiling. Default 8 s. */
  maxDelayMs?: number;
  /** Ceiling for a server's Retry-After. Default 30 s. */
  maxRetryAfterMs?: number;
  /** Headers/body timeout per attempt. Default 60 s. */
  timeoutMs?: number;
  /** Connections kept to the endpoint. Default 16. */
  connections?: number;
  /** Injected for tests (observes the chosen delays without waiting on them). */
  sleep?: (ms: number) => Promise<void>;
}

export interface AzureRequest {
  /** Operation name for messages, e.g. "Get Blob". */
  op: string;
  method: 'GET' | 'HEAD' | 'PUT' | 'DELETE';
  /** Full blob name (unencoded); omitted for container-level requests. */
  blob?: string;
  /** Decoded query parameters (empty values are dropped). */
  query?: Record<string, string | undefined>;
  /** Lower-case header names. */
  headers?: Record<string, string | undefined>;
  body?: Buffer;
  /** Object path for error messages. */
  where?: string;
  /** Statuses returned to the caller instead of thrown. */
  accept?: number[];
}

export interface AzureResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Azure error code (x-ms-error-code header or <Code> of the body) for non-2xx. */
  errorCode: string | undefined;
  /** Attempts this response took (>1 means an earlier attempt may have taken effect). */
  attempts: number;
}

/** A MembraneError that also says what the service answered. */
export class AzureStoreError extends MembraneError {
  constructor(
    code: string,
    message: string,
    readonly status: number | undefined,
    readonly azureCode: string | undefined,
    readonly attempts: number,
    opts: { where?: string; cause?: unknown } = {},
  ) {
    super(code, message, opts);
  }
}

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const RETRY_NET = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

export class AzureTransport {
  /** e.g. azure-blob:https://acct.blob.core.windows.net/container/prefix — no credentials. */
  readonly description: string;
  private readonly origin: string;
  /** Encoded path of the container, e.g. "/devstoreaccount1/data" or "/data". */
  private readonly containerPath: string;
  private readonly pool: Pool;
  private readonly signer: SharedKeySigner | undefined;
  private readonly sas: string | undefined;
  private readonly opts: Required<Omit<TransportOptions, 'sleep'>> & Pick<TransportOptions, 'sleep'>;

  constructor(
    url: string,
    readonly container: string,
    prefix: string,
    private readonly auth: AzureAuth,
    opts: TransportOptions = {},
  ) {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new MembraneError(
        STORE_CONFIG,
        'azure-blob url is not a valid URL (expected https://<account>.blob.core.windows.net)',
      );
    }
    if (u.protocol !== 'https:' && u.protocol !== 'http:') {
      throw new MembraneError(STORE_CONFIG, `azure-blob url must be http(s), not ${u.protocol}`);
    }
    if (u.search || u.hash || u.username || u.password) {
      // Never echo the URL here: its query is most likely a SAS token.
      throw new MembraneError(
        STORE_CONFIG,
        'azure-blob url must not carry a query, fragment or user info: put a SAS token in auth {kind: sas, sas}',
      );
    }
    if (!/^(\$root|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$/.test(container)) {
      throw new MembraneError(
        STORE_CONFIG,
        `azure-blob container name '${container}' is invalid (3-63 lower-case letters, digits and single hyphens)`,
      );
    }
    if (auth.kind === 'shared-key' && !/^[a-z0-9]{3,24}$/.test(auth.account)) {
      throw new MembraneError(STORE_CONFIG, `azure-blob account name '${auth.account}' is invalid`);
    }
    this.origin = u.origin;
    const base = u.pathname.replace(/\/+$/, '');
    this.containerPath = `${base}/${encodeSegment(container)}`;
    this.description = `azure-blob:${u.origin}${base}/${container}${prefix ? `/${prefix.replace(/\/+$/, '')}` : ''}`;
    this.signer = auth.kind === 'shared-key' ? sharedKeySigner(auth.account, auth.key) : undefined;
    this.sas = auth.kind === 'sas' ? auth.sas.replace(/^\?/, '') : undefined;
    if (auth.kind === 'sas' && !/(^|&)sig=/.test(this.sas ?? '')) {
      throw new MembraneError(
        STORE_CONFIG,
        'azure-blob SAS token has no sig= parameter (paste the whole query string)',
      );
    }
    this.opts = {
      maxAttempts: opts.maxAttempts ?? 5,
      baseDelayMs: opts.baseDelayMs ?? 200,
      maxDelayMs: opts.maxDelayMs ?? 8000,
      maxRetryAfterMs: opts.maxRetryAfterMs ?? 30_000,
      timeoutMs: opts.timeoutMs ?? 60_000,
      connections: opts.connections ?? 16,
      sleep: opts.sleep,
    };
    this.pool = new Pool(this.origin, {
      connections: this.opts.connections,
      headersTimeout: this.opts.timeoutMs,
      bodyTimeout: this.opts.timeoutMs,
      keepAliveTimeout: 4000,
    });
  }

  async close(): Promise<void> {
    await this.pool.close();
  }

  async send(req: AzureRequest): Promise<AzureResponse> {
    const encodedPath =
      req.blob === undefined ? this.containerPath : `${this.containerPath}/${encodeBlobName(req.blob)}`;
    const query: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined && v !== '') query[k] = v;
    let qs = Object.entries(query)
      .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
      .join('&');
    if (this.sas) qs = qs ? `${qs}&${this.sas}` : this.sas;
    const path = qs ? `${encodedPath}?${qs}` : encodedPath;

    for (let attempt = 1; ; attempt++) {
      const headers = await this.headersFor(req, encodedPath, query);
      let status: number;
      let resHeaders: Record<string, string | string[] | undefined>;
      let body: Buffer;
      try {
        const res: Dispatcher.ResponseData = await this.pool.request({
          method: req.method,
          path,
          headers,
          body: req.body,
        });
        status = res.statusCode;
        resHeaders = res.headers;
        body = Buffer.from(await res.body.arrayBuffer());
      } catch (e) {
        const code = netCode(e);
        if (code && RETRY_NET.has(code) && attempt < this.opts.maxAttempts) {
          await this.pause(this.backoff(attempt));
          continue;
        }
        throw new AzureStoreError(
          StoreErrorCode.IO,
          `Azure Blob ${req.op} could not reach ${this.description} (${code ?? (e as Error).message}) after ${attempt} attempt(s) — check the url, network and that the service is up`,
          undefined,
          undefined,
          attempt,
          { where: req.where, cause: e },
        );
      }
      if (status >= 200 && status < 300)
        return { status, headers: resHeaders, body, errorCode: undefined, attempts: attempt };
      const errorCode = header(resHeaders, 'x-ms-error-code') ?? parseError(body.toString('utf8')).code;
      if (RETRY_STATUS.has(status) && attempt < this.opts.maxAttempts) {
        const ra = retryAfterMs(header(resHeaders, 'retry-after'));
        await this.pause(Math.max(this.backoff(attempt), Math.min(ra ?? 0, this.opts.maxRetryAfterMs)));
        continue;
      }
      if (req.accept?.includes(status))
        return { status, headers: resHeaders, body, errorCode, attempts: attempt };
      throw this.statusError(req, status, errorCode, body, attempt);
    }
  }

  private async headersFor(
    req: AzureRequest,
    encodedPath: string,
    query: Record<string, string>,
  ): Promise<Record<string, string>> {
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers ?? {})) if (v !== undefined) h[k.toLowerCase()] = v;
    h['x-ms-version'] = AZURE_API_VERSION;
    h['x-ms-date'] = new Date().toUTCString();
    // Content-Length is signed, so it is set here rather than left to undici.
    if (req.body) h['content-length'] = String(req.body.length);
    else if (req.method === 'PUT') h['content-length'] = '0';
    if (this.signer) {
      h.authorization = this.signer.authorization({ method: req.method, encodedPath, query, headers: h });
    } else if (this.auth.kind === 'bearer') {
      let token: string;
      try {
        token = await this.auth.token();
      } catch (e) {
        throw new AzureStoreError(
          StoreErrorCode.AUTH,
          `Azure Blob ${req.op}: the bearer token provider failed for ${this.description} — check the managed identity / token source`,
          undefined,
          undefined,
          0,
          { where: req.where, cause: e },
        );
      }
      h.authorization = `Bearer ${token}`;
    }
    return h;
  }

  private statusError(
    req: AzureRequest,
    status: number,
    errorCode: string | undefined,
    body: Buffer,
    attempts: number,
  ): AzureStoreError {
    const detail = scrub(parseError(body.toString('utf8')).message ?? '');
    const what = `HTTP ${status}${errorCode ? ` ${errorCode}` : ''}${detail ? `: ${detail}` : ''}`;
    const mk = (code: string, msg: string) =>
      new AzureStoreError(code, msg, status, errorCode, attempts, { where: req.where });
    if (status === 401 || status === 403) {
      return mk(
        StoreErrorCode.AUTH,
        `Azure Blob ${req.op} was refused for ${this.description} (${what}) — ${this.authHint()}`,
      );
    }
    if (status === 404) {
      if (errorCode === 'ContainerNotFound') {
        return mk(
          StoreErrorCode.NOT_FOUND,
          `container '${this.container}' does not exist at ${this.description} — create it or fix the container name`,
        );
      }
      return mk(
        StoreErrorCode.NOT_FOUND,
        this.auth.kind === 'anonymous'
          ? 'object not found (with anonymous access a private container also answers 404: configure sas, shared-key or bearer auth if it is private)'
          : 'object not found',
      );
    }
    if (status === 412 || (status === 409 && errorCode === 'BlobAlreadyExists')) {
      return mk(StoreErrorCode.PRECONDITION, `Azure Blob ${req.op}: precondition failed (${what})`);
    }
    const retried = RETRY_STATUS.has(status) ? ` after ${attempts} attempt(s)` : '';
    return mk(StoreErrorCode.IO, `Azure Blob ${req.op} failed for ${this.description} (${what})${retried}`);
  }

  private authHint(): string {
    switch (this.auth.kind) {
      case 'shared-key':
        return `check the account name ('${this.auth.account}', which must be the account in the url) and its key (key1/key2 from the storage account's Access keys)`;
      case 'sas':
        return 'check the SAS token: signature, start/expiry (st/se), permissions (sp must allow this operation), scope (this container or account) and protocol (spr=https,http for http endpoints)';
      case 'bearer':
        return "check the token's audience (https://storage.azure.com/) and that the identity holds a Storage Blob Data role on the container";
      case 'anonymous':
        return 'the container does not allow anonymous access for this operation: configure sas, shared-key or bearer auth';
    }
  }

  private backoff(attempt: number): number {
    const ceiling = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** (attempt - 1));
    return Math.round(ceiling * (0.5 + Math.random() * 0.5)); // "equal jitter": never ~0, never synchronized
  }

  private pause(ms: number): Promise<void> {
    if (this.opts.sleep) return this.opts.sleep(ms);
    return new Promise((r) => setTimeout(r, ms));
  }
}

/** Percent-encodes one path segment, including the characters encodeURIComponent leaves (!'()*). */
export function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export function encodeBlobName(name: string): string {
  return name.split('/').map(encodeSegment).join('/');
}

function header(h: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** Retry-After as delta-seconds or an HTTP date. */
function retryAfterMs(v: string | undefined): number | undefined {
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

function netCode(e: unknown): string | undefined {
  const err = e as { code?: unknown; cause?: { code?: unknown } };
  if (typeof err?.code === 'string') return err.code;
  if (typeof err?.cause?.code === 'string') return err.cause.code;
  return undefined;
}

/** Service messages are short and secret-free, but be certain: no signatures, no long runs. */
function scrub(msg: string): string {
  return msg
    .replace(/sig=[^&\s'"]*/gi, 'sig=<redacted>')
    .replace(/SharedKey\s+[^:\s]+:\S+/gi, 'SharedKey <redacted>')
    .replace(/Bearer\s+\S+/gi, 'Bearer <redacted>')
    .slice(0, 200);
}
