/**
 * One HTTP request, from the app to its upstream: decide, check limits, resolve and
 * check, then stream the body through the mode's stages (byte limit, inspection or
 * sealing) to a pool that dials only the checked address. Redirects are returned to
 * the app as they are, never followed here. Any failure becomes a refusal with a
 * Membrane-Reason; nothing is passed on that was not fully judged.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { RequestDecision } from '../../policy/egress/types.js';
import { byteLimit, inspecting } from './body-streams.js';
import { HttpErrorCode } from './errors.js';
import { asRefusal, Refusal } from './refusals.js';
import { SEALED_CONTENT_TYPE, SEALED_HEADER, SEALED_HEADER_VALUE } from './seal.js';
import { type Draft, draft, finish, round, type Shared, sendRefusal } from './shared.js';
import { resolveChecked } from './upstream.js';

export interface Target {
  readonly kind: 'request' | 'inner-request';
  readonly scheme: 'http' | 'https';
  readonly host: string;
  readonly port: number;
  /** Path and query as the app sent them. */
  readonly pathAndQuery: string;
}

// RFC 9110 §7.6.1 hop-by-hop fields, plus the proxy's own; never forwarded either way.
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
  'expect',
]);

function hopByHop(headers: IncomingMessage['headers']): Set<string> {
  const out = new Set(HOP);
  const c = headers.connection;
  if (typeof c === 'string') for (const t of c.split(',')) out.add(t.trim().toLowerCase());
  return out;
}

function hasBody(req: IncomingMessage): boolean {
  const cl = req.headers['content-length'];
  if (cl !== undefined) return Number(cl) > 0;
  return req.headers['transfer-encoding'] !== undefined;
}

export async function forward(
  sh: Shared,
  req: IncomingMessage,
  res: ServerResponse,
  t: Target,
): Promise<void> {
  const started = performance.now();
  const method = req.method ?? 'GET';
  const q = t.pathAndQuery.indexOf('?');
  const path = q < 0 ? t.pathAndQuery : t.pathAndQuery.slice(0, q);
  const d = draft(sh, t.kind, method, t.host, t.port);
  d.path = path;
  try {
    const decision = decide(sh, d, { method, scheme: t.scheme, host: t.host, port: t.port, path });
    await send(sh, req, res, t, d, decision, path);
    finish(sh, d, started);
  } catch (e) {
    const r = asRefusal(e);
    sendRefusal(res, r);
    if (r.status >= 500) sh.log(`http-egress: ${d.id} ${method} ${t.host}:${t.port}: ${r.reason}`);
    finish(sh, d, started, r);
  }
}

export function decide(
  sh: Shared,
  d: Draft,
  req: Parameters<Shared['engine']['decideRequest']>[0],
): RequestDecision {
  const t0 = performance.now();
  let decision: RequestDecision;
  try {
    decision = sh.engine.decideRequest(req);
  } catch (e) {
    throw new Refusal(HttpErrorCode.RULE_ERROR, 'the request could not be evaluated against the policy', {
      cause: e,
    });
  }
  d.timings = { ...d.timings, decision: round(performance.now() - t0) };
  d.rule = decision.rule;
  d.mode = decision.mode;
  d.verdict = decision.verdict;
  d.reason = decision.reason;
  if (decision.verdict === 'deny')
    throw new Refusal(HttpErrorCode.DENIED, decision.reason, { check: decision.rule });
  if (decision.verdict === 'report')
    sh.log(
      `http-egress: report ${decision.rule}: ${req.method} ${decision.host}:${req.port} ${req.path ?? ''}`,
    );
  return decision;
}

async function send(
  sh: Shared,
  req: IncomingMessage,
  res: ServerResponse,
  t: Target,
  d: Draft,
  decision: RequestDecision,
  path: string,
): Promise<void> {
  const { limits } = sh;
  // Trusted and secure rules always reach the upstream over verified TLS, even when the
  // app wrote http:// (the default port 80 then becomes 443).
  const upgrade = decision.mode !== 'open';
  const tls = t.scheme === 'https' || upgrade;
  const port = t.scheme === 'http' && upgrade && t.port === 80 ? 443 : t.port;
  const host = decision.host;

  const headBytes = req.rawHeaders.reduce((n, h) => n + h.length + 2, (req.url?.length ?? 0) + 16);
  const bodyCap = Math.min(limits.maxBodyBytes, limits.maxRequestBytes - headBytes);
  const cl = req.headers['content-length'];
  if (cl !== undefined && Number(cl) > bodyCap)
    throw new Refusal(HttpErrorCode.BODY_TOO_LARGE, `request body of ${cl} bytes exceeds ${bodyCap} bytes`);

  const dest = `${host}:${port}`;
  if (sh.budget.exhausted(dest))
    throw new Refusal(
      HttpErrorCode.BUDGET,
      `the byte budget for ${dest} (${limits.bytesPerDestination}) is spent`,
    );

  const r0 = performance.now();
  const address = await resolveChecked(sh.engine, sh.resolver, sh.self(), host, decision.ip, port);
  d.address = address;
  d.timings = { ...d.timings, dns: round(performance.now() - r0) };

  const keyring = decision.mode === 'secure' ? sh.keyringFor(decision.dek) : undefined;
  if (decision.mode === 'secure' && !sh.toolkit)
    throw new Refusal(
      HttpErrorCode.NOT_INSPECTABLE,
      'secure mode needs the sealing module, which is not available',
    );
  const exchange = { method: req.method ?? 'GET', host, path };
  const binding = keyring && sh.toolkit ? sh.toolkit.bindingContext(exchange, 'request') : {};

  const drop = hopByHop(req.headers);
  const headers: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = (req.rawHeaders[i] as string).toLowerCase();
    if (drop.has(name)) continue;
    if (keyring && (name === 'content-length' || name === 'content-type')) continue;
    headers.push(req.rawHeaders[i] as string, req.rawHeaders[i + 1] as string);
  }
  const defaultPort = tls ? 443 : 80;
  const authority = host.includes(':') ? `[${host}]` : host;
  headers.push('host', port === defaultPort ? authority : `${authority}:${port}`);

  let body: Readable | undefined;
  let bodyError: unknown;
  if (hasBody(req)) {
    const stages: Transform[] = [
      byteLimit(bodyCap, 'request body', (n) => {
        d.bytes = { ...d.bytes, sent: d.bytes.sent + n };
        if (!sh.budget.charge(dest, n))
          req.destroy(new Refusal(HttpErrorCode.BUDGET, `the byte budget for ${dest} is spent`));
      }),
    ];
    if (decision.inspect) {
      if (!sh.inspector)
        throw new Refusal(HttpErrorCode.NOT_INSPECTABLE, `${decision.rule} requires inspection`);
      const ct = req.headers['content-type'];
      stages.push(
        inspecting(sh.inspector(decision.inspect, ct), decision.inspect, (_f, sentence) =>
          sh.log(`http-egress: report ${d.id} ${decision.rule}: ${sentence}`),
        ),
      );
    }
    let s: Readable = req;
    for (const st of stages) s = chain(s, st);
    if (keyring && sh.toolkit) {
      // The app's content type travels authenticated in the message's context (seal.ts, docs).
      const ct = req.headers['content-type'];
      const sealed = sh.toolkit.sealBody(s, keyring, ct ? { ...binding, 'content-type': ct } : binding);
      s.on('error', (e) => sealed.destroy(e));
      s = sealed;
      headers.push('content-type', SEALED_CONTENT_TYPE, SEALED_HEADER, SEALED_HEADER_VALUE);
    }
    s.on('error', (e) => {
      bodyError ??= e;
    });
    body = s;
  }

  const dispatcher = sh.pools.get({ host, port, address, tls, tlsSettings: decision.tls });
  let up: Awaited<ReturnType<typeof dispatcher.request>>;
  try {
    up = await dispatcher.request({ method: req.method ?? 'GET', path: t.pathAndQuery, headers, body });
  } catch (e) {
    throw bodyError ?? e;
  }

  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(up.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
  const count = new Transform({
    transform(chunk: Buffer, _e, cb) {
      d.bytes = { ...d.bytes, received: d.bytes.received + chunk.length };
      sh.budget.charge(dest, chunk.length);
      cb(null, chunk);
    },
  });
  d.status = up.statusCode;

  const sealedResponse =
    keyring && sh.toolkit && String(up.headers['content-type'] ?? '').startsWith(SEALED_CONTENT_TYPE);
  if (!sealedResponse) {
    res.writeHead(up.statusCode, out);
    await pipeline(up.body, count, res);
    return;
  }
  // A sealed answer is opened for the app. Headers wait for the first authenticated
  // frame, so a body that fails at once becomes a 502; a later failure cuts the
  // connection (the app sees a truncated response, never unauthenticated bytes).
  const toolkit = sh.toolkit as NonNullable<Shared['toolkit']>;
  const opened = toolkit.openBody(
    chain(up.body, count),
    keyring,
    toolkit.bindingContext(exchange, 'response'),
  );
  const it = opened[Symbol.asyncIterator]();
  const first = await it.next();
  // The opened body's length and type are not the sealed message's.
  delete out['content-length'];
  out['content-type'] = 'application/octet-stream';
  delete out[SEALED_HEADER];
  res.writeHead(up.statusCode, out);
  try {
    for (let n = first; !n.done; n = await it.next()) if (!res.write(n.value)) await drained(res);
    res.end();
  } catch (e) {
    res.destroy();
    throw e;
  }
}

function chain(src: Readable, t: Transform): Transform {
  src.on('error', (e) => t.destroy(e));
  return src.pipe(t);
}

function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', closed);
      resolve();
    };
    const closed = () => {
      res.off('drain', done);
      reject(new Refusal(HttpErrorCode.UPSTREAM_FAILED, 'the app closed the connection'));
    };
    res.once('drain', done);
    res.once('close', closed);
  });
}
