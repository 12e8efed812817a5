/**
 * The HTTP egress proxy's listener: proxy authentication, request and header checks,
 * rate and concurrency limits, then dispatch — absolute-form requests to `forward`,
 * CONNECT to `tunnel`, intercepted tunnels' inner requests back to `forward` through an
 * inner (non-listening) HTTP server. Lifecycle: `drain` stops taking work and waits for
 * in-flight requests; `close` drains, then cuts tunnels and releases everything (once).
 */
import { isUtf8 } from 'node:buffer';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Keyring } from '../core/index.js';
import type { AuditSink, Meter, OwnListener } from '../proxy.js';
import { type DecisionLog, nullDecisionLog, openDecisionLog } from './decision-log.js';
import { HttpErrorCode } from './errors.js';
import { forward } from './forward.js';
import { httpInstruments, noopMeter } from './instruments.js';
import { ByteBudget, type EgressLimits, RateLimiter, resolveLimits, Slots } from './limits.js';
import type { Dialer, EgressEngine, InspectorFactory, Resolver, RunCa, TlsToolkit } from './ports.js';
import { Refusal } from './refusals.js';
import { directDialer, systemResolver } from './resolvers.js';
import { draft, finish, type Shared, sendRefusal } from './shared.js';
import { type TunnelInfo, tunnel } from './tunnel.js';
import { UpstreamPools } from './upstream.js';

export interface HttpEgressOptions {
  readonly name: string;
  readonly engine: EgressEngine;
  readonly host?: string;
  /** 0 = ephemeral. */
  readonly port?: number;
  /** Proxy authentication with a per-run password (default on). */
  readonly auth?: boolean;
  readonly keyringFor?: (dek: string | undefined) => Keyring;
  readonly toolkit?: TlsToolkit;
  readonly inspector?: InspectorFactory;
  readonly resolver?: Resolver;
  readonly dial?: Dialer;
  readonly audit?: AuditSink;
  readonly meter?: Meter;
  readonly log?: (line: string) => void;
  /** Where the decision lines go (JSONL, 0600); none when absent. */
  readonly decisionLog?: string;
  /** Where the run CA certificate is written for the app (when a rule intercepts TLS). */
  readonly stateDir?: string;
  readonly ownListeners?: () => readonly OwnListener[];
}

export interface HttpEgressServer {
  readonly host: string;
  readonly port: number;
  /** The URL the app puts in HTTP_PROXY (with the per-run credentials when auth is on). */
  readonly proxyUrl: string;
  /** The run CA certificate file, when a rule intercepts TLS. */
  readonly caFile: string | undefined;
  readonly limits: EgressLimits;
  drain(): Promise<void>;
  close(): Promise<void>;
}

const PROXY_USER = 'membrane';

export async function startHttpEgress(o: HttpEgressOptions): Promise<HttpEgressServer> {
  const limits = resolveLimits(o.engine.limits);
  const host = o.host ?? '127.0.0.1';
  const password = o.auth === false ? undefined : randomBytes(18).toString('base64url');
  const expected = password
    ? Buffer.from(`Basic ${Buffer.from(`${PROXY_USER}:${password}`).toString('base64')}`)
    : undefined;
  let ca: RunCa | undefined;
  let caFile: string | undefined;
  // First: a log that cannot be opened fails the start before anything else exists.
  const decisions: DecisionLog = o.decisionLog ? openDecisionLog(o.decisionLog) : nullDecisionLog;
  if (o.engine.interceptsTls && o.toolkit) {
    ca = await o.toolkit.createRunCa({ name: `Membrane run CA (${o.name})` });
    if (o.stateDir) {
      caFile = join(o.stateDir, `${o.name}.ca.pem`);
      writeFileSync(caFile, ca.certPem, { mode: 0o644 });
    }
  }
  const runId = randomBytes(4).toString('hex');
  let seq = 0;
  let listening: OwnListener | undefined;
  const sh: Shared = {
    engine: o.engine,
    resolver: o.resolver ?? systemResolver,
    dial: o.dial ?? directDialer,
    toolkit: o.toolkit,
    inspector: o.inspector,
    keyringFor:
      o.keyringFor ??
      (() => {
        throw new Refusal(
          HttpErrorCode.RULE_ERROR,
          'secure mode needs a DEK and none was given to the proxy',
        );
      }),
    limits,
    self: () => [...(o.ownListeners?.() ?? []), ...(listening ? [listening] : [])],
    pools: new UpstreamPools({
      dial: o.dial ?? directDialer,
      toolkit: o.toolkit,
      connectTimeoutMs: limits.connectTimeoutMs,
      headersTimeoutMs: limits.headersTimeoutMs,
      idleTimeoutMs: limits.idleTimeoutMs,
    }),
    rate: new RateLimiter(limits.requestsPerSecond, performance.now()),
    requests: new Slots(limits.maxConcurrentRequests),
    tunnels: new Slots(limits.maxTunnels),
    budget: new ByteBudget(limits.bytesPerDestination),
    ca,
    instruments: httpInstruments(o.meter ?? noopMeter),
    audit: o.audit ?? { emit() {} },
    decisions,
    log: o.log ?? (() => {}),
    nextId: () => `${runId}-${++seq}`,
  };

  let draining = false;
  let inflight = 0;
  let idleWaiters: (() => void)[] = [];
  const sockets = new Set<Socket | Duplex>();
  const tunnels = new Set<Socket | Duplex>();
  const track = (s: Socket | Duplex, set = sockets) => {
    set.add(s);
    s.once('close', () => set.delete(s));
  };
  const trackTunnel = (s: Socket | Duplex) => track(s, tunnels);
  const tunnelInfo = new WeakMap<object, TunnelInfo>();

  /** Checks every request shares before dispatch; returns a release function or refuses. */
  const admit = (req: IncomingMessage, outer: boolean): void => {
    if (draining)
      throw new Refusal(HttpErrorCode.UPSTREAM_FAILED, 'the proxy is stopping', { check: 'stopping' });
    if (sh.decisions.failed)
      throw new Refusal(HttpErrorCode.PROXY_UNAVAILABLE, 'the decision log cannot be written', {
        check: 'decision-log',
      });
    for (let i = 1; i < req.rawHeaders.length; i += 2)
      if (!isUtf8(Buffer.from(req.rawHeaders[i] as string, 'latin1')))
        throw new Refusal(HttpErrorCode.MALFORMED, `header ${req.rawHeaders[i - 1]} is not valid UTF-8`, {
          check: 'request.header',
        });
    if (outer && expected) {
      const got = Buffer.from(req.headers['proxy-authorization'] ?? '');
      if (got.length !== expected.length || !timingSafeEqual(got, expected))
        throw new Refusal(
          HttpErrorCode.AUTH_REQUIRED,
          'proxy authentication required (use the HTTP_PROXY URL given to the app)',
        );
    }
    if (!sh.rate.take(performance.now()))
      throw new Refusal(
        HttpErrorCode.RATE_LIMITED,
        `more than ${limits.requestsPerSecond} requests per second`,
      );
  };

  const onRequest = (outer: boolean) => (req: IncomingMessage, res: ServerResponse) => {
    const started = performance.now();
    let release: (() => void) | undefined;
    try {
      admit(req, outer);
      release = sh.requests.tryAcquire();
      if (!release)
        throw new Refusal(
          HttpErrorCode.TOO_MANY,
          `more than ${limits.maxConcurrentRequests} requests are in flight`,
        );
      const target = outer ? absoluteTarget(req.url) : innerTarget(req.url, tunnelInfo.get(req.socket));
      inflight++;
      const done = release;
      release = undefined;
      forward(sh, req, res, target).finally(() => {
        done();
        if (--inflight === 0) for (const w of idleWaiters.splice(0)) w();
      });
    } catch (e) {
      release?.();
      const r =
        e instanceof Refusal ? e : new Refusal(HttpErrorCode.MALFORMED, 'the request could not be read');
      const d = draft(sh, outer ? 'request' : 'inner-request', req.method ?? '?', '-', 0);
      sendRefusal(res, r);
      finish(sh, d, started, r);
    }
  };

  const inner: Server = createServer(
    { noDelay: true, maxHeaderSize: limits.maxHeaderBytes },
    onRequest(false),
  );
  const handoff = (socket: Duplex, info: TunnelInfo) => {
    tunnelInfo.set(socket, info);
    trackTunnel(socket);
    inner.emit('connection', socket);
  };

  const server: Server = createServer(
    {
      noDelay: true,
      requireHostHeader: false,
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      // Node requires requestTimeout >= headersTimeout; keep its 5-minute default otherwise.
      requestTimeout: Math.max(300_000, limits.headersTimeoutMs),
      keepAliveTimeout: limits.idleTimeoutMs,
    },
    onRequest(true),
  );
  server.on('connection', (s: Socket) => track(s));
  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const started = performance.now();
    try {
      admit(req, true);
    } catch (e) {
      const r = e as Refusal;
      socket.end(rawRefusal(r));
      finish(sh, draft(sh, 'tunnel', 'CONNECT', req.url ?? '-', 0), started, r);
      return;
    }
    // Tunnels are not in-flight work for drain(): a tunnel lasts as long as the app
    // keeps it; close() cuts them. Their inner requests are counted like any request.
    trackTunnel(socket);
    void tunnel(sh, req, socket, head, handoff, trackTunnel);
  });
  server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    const r = new Refusal(HttpErrorCode.DENIED, 'protocol upgrades (WebSocket) are not proxied', {
      check: 'request.upgrade',
    });
    socket.end(rawRefusal(r));
    finish(sh, draft(sh, 'request', req.method ?? '?', '-', 0), performance.now(), r);
  });
  for (const s of [server, inner])
    s.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
      const r =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? new Refusal(
              HttpErrorCode.HEADERS_TOO_LARGE,
              `request headers exceed ${limits.maxHeaderBytes} bytes`,
            )
          : new Refusal(HttpErrorCode.MALFORMED, `the request could not be parsed (${err.code ?? 'error'})`);
      if (socket.writable) socket.end(rawRefusal(r));
      else socket.destroy();
      if (err.code !== 'ECONNRESET') finish(sh, draft(sh, 'request', '?', '-', 0), performance.now(), r);
    });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  listening = { host, port };
  const authority = host.includes(':') ? `[${host}]` : host;
  const proxyUrl = password
    ? `http://${PROXY_USER}:${password}@${authority}:${port}`
    : `http://${authority}:${port}`;

  let drained: Promise<void> | undefined;
  let closed: Promise<void> | undefined;
  const drain = () => {
    drained ??= new Promise<void>((resolve) => {
      draining = true;
      server.close();
      server.closeIdleConnections();
      if (inflight === 0) resolve();
      else idleWaiters.push(resolve);
    });
    return drained;
  };
  const close = () => {
    closed ??= (async () => {
      draining = true;
      server.close();
      // Tunnels never "finish" by themselves; in-flight requests get a bounded grace.
      for (const s of tunnels) s.destroy();
      await Promise.race([drain(), new Promise((r) => setTimeout(r, 5000).unref())]);
      idleWaiters = [];
      for (const s of sockets) s.destroy();
      server.closeAllConnections();
      await sh.pools.close();
      ca?.destroy();
      await decisions.close();
    })();
    return closed;
  };
  return { host, port, proxyUrl, caFile, limits, drain, close };
}

function rawRefusal(r: Refusal): string {
  return (
    `HTTP/1.1 ${r.status} ${r.status === 407 ? 'Proxy Authentication Required' : 'Refused'}\r\n` +
    `Membrane-Reason: ${r.reason}\r\n` +
    (r.status === 407 ? 'Proxy-Authenticate: Basic realm="membrane"\r\n' : '') +
    'Content-Length: 0\r\nConnection: close\r\n\r\n'
  );
}

/** `http://host[:port]/path?query` — the forward-proxy form. Userinfo is refused, not forwarded. */
export function absoluteTarget(raw: string | undefined) {
  let url: URL;
  try {
    if (!raw || raw.startsWith('/')) throw new Error('origin-form');
    url = new URL(raw);
  } catch {
    throw new Refusal(
      HttpErrorCode.MALFORMED,
      'a proxy request needs an absolute http:// URL in the request line',
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Refusal(
      HttpErrorCode.MALFORMED,
      `scheme ${url.protocol} is not proxied (http: and https: only)`,
    );
  if (url.username || url.password)
    throw new Refusal(HttpErrorCode.MALFORMED, 'credentials in the request URL are not forwarded');
  const scheme = url.protocol === 'https:' ? ('https' as const) : ('http' as const);
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  if (!host) throw new Refusal(HttpErrorCode.MALFORMED, 'the request URL has no host');
  const port = url.port ? Number(url.port) : scheme === 'https' ? 443 : 80;
  return { kind: 'request' as const, scheme, host, port, pathAndQuery: `${url.pathname}${url.search}` };
}

/** Inside an intercepted tunnel: origin-form; the host is the tunnel's, whatever Host says. */
function innerTarget(raw: string | undefined, info: TunnelInfo | undefined) {
  if (!info) throw new Refusal(HttpErrorCode.MALFORMED, 'request outside a tunnel');
  let pathAndQuery = raw ?? '';
  if (!pathAndQuery.startsWith('/')) {
    try {
      const u = new URL(pathAndQuery);
      pathAndQuery = `${u.pathname}${u.search}`;
    } catch {
      throw new Refusal(HttpErrorCode.MALFORMED, 'the request target is not a path');
    }
  } else {
    // normalise dot segments exactly as the upstream will see them
    const u = new URL(pathAndQuery, 'http://x');
    pathAndQuery = `${u.pathname}${u.search}`;
  }
  return {
    kind: 'inner-request' as const,
    scheme: info.tls ? ('https' as const) : ('http' as const),
    host: info.host,
    port: info.port,
    pathAndQuery,
  };
}
