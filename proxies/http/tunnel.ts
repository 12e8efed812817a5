/**
 * CONNECT. The target is decided before anything is dialed; then one of two things:
 *  - blind tunnel, only where the rule allows the destination in open mode without
 *    inspection: resolve and check, dial the checked address, splice bytes both ways
 *    (counted against the destination's budget, cut on idle);
 *  - interception, for trusted, secure and inspected destinations: the app's TLS is
 *    terminated with the run CA (a leaf for the host the app asked for) and every inner
 *    request is decided and forwarded on its own (path and method rules apply), over
 *    verified TLS to the upstream. An app that speaks plain HTTP inside the tunnel is
 *    handled the same way without the TLS layer (the first byte tells: 0x16 starts a
 *    TLS handshake). Without a run CA, traffic that must be inspected is refused.
 */
import type { IncomingMessage } from 'node:http';
import { isIP, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { TLSSocket } from 'node:tls';
import { HttpErrorCode } from './errors.js';
import { decide } from './forward.js';
import { asRefusal, Refusal } from './refusals.js';
import { draft, finish, round, type Shared } from './shared.js';
import { dialChecked, resolveChecked } from './upstream.js';

export interface TunnelInfo {
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
}

/** `host:port`, `[v6]:port`; nothing else (no userinfo, no path, no missing port). */
export function parseConnectTarget(target: string | undefined): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._~%!$&'()*+,;=-]+)):([0-9]{1,5})$/.exec(target ?? '');
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535)
    throw new Refusal(HttpErrorCode.MALFORMED, 'the CONNECT target must be host:port with a port 1-65535');
  const host = (m[1] ?? m[2]) as string;
  if (m[1] !== undefined && isIP(host) !== 6)
    throw new Refusal(HttpErrorCode.MALFORMED, 'the bracketed CONNECT target is not an IPv6 address');
  return { host, port };
}

export type InnerHandoff = (socket: Duplex, info: TunnelInfo) => void;

export async function tunnel(
  sh: Shared,
  req: IncomingMessage,
  client: Socket,
  head: Buffer,
  handoff: InnerHandoff,
  track: (s: Socket) => void,
): Promise<void> {
  const started = performance.now();
  client.setNoDelay(true);
  const d = draft(sh, 'tunnel', 'CONNECT', req.url ?? '', 0);
  let release: (() => void) | undefined;
  try {
    const target = parseConnectTarget(req.url);
    d.host = target.host;
    d.port = target.port;
    release = sh.tunnels.tryAcquire();
    if (!release)
      throw new Refusal(HttpErrorCode.TOO_MANY, `more than ${sh.limits.maxTunnels} tunnels are open`);
    const scheme = target.port === 80 ? 'http' : 'https';
    const decision = decide(sh, d, { method: 'CONNECT', scheme, host: target.host, port: target.port });
    const intercept = decision.mode !== 'open' || decision.inspect !== undefined;
    if (intercept) {
      if (!sh.ca)
        throw new Refusal(
          HttpErrorCode.NOT_INSPECTABLE,
          `${decision.rule} requires inspection and no run CA is available`,
        );
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      d.status = 200;
      finish(sh, d, started);
      const ca = sh.ca;
      const free = release;
      release = undefined;
      client.once('close', free);
      intercepted(client, head, (inner, isTls) => {
        const s = isTls
          ? new TLSSocket(inner, {
              isServer: true,
              secureContext: ca.secureContextFor(decision.host),
              ALPNProtocols: ['http/1.1'],
            })
          : inner;
        if (isTls) s.on('error', () => client.destroy());
        handoff(s, { host: decision.host, port: target.port, tls: isTls });
      });
      return;
    }
    const dest = `${decision.host}:${target.port}`;
    if (sh.budget.exhausted(dest))
      throw new Refusal(
        HttpErrorCode.BUDGET,
        `the byte budget for ${dest} (${sh.limits.bytesPerDestination}) is spent`,
      );
    const r0 = performance.now();
    const address = await resolveChecked(
      sh.engine,
      sh.resolver,
      sh.self(),
      decision.host,
      decision.ip,
      target.port,
    );
    d.address = address;
    d.timings = { ...d.timings, dns: round(performance.now() - r0) };
    const upstream = await dialChecked(sh.dial, address.ip, target.port, sh.limits.connectTimeoutMs);
    track(upstream);
    client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    d.status = 200;
    await splice(sh, client, upstream, head, dest, d);
    finish(sh, d, started);
  } catch (e) {
    const r = asRefusal(e);
    if (client.writable && d.status === 0)
      client.end(
        `HTTP/1.1 ${r.status} ${r.status === 403 ? 'Forbidden' : 'Refused'}\r\nMembrane-Reason: ${r.reason}\r\n` +
          'Content-Length: 0\r\nConnection: close\r\n\r\n',
      );
    else client.destroy();
    finish(sh, d, started, r);
  } finally {
    release?.();
  }
}

/** Bytes both ways until either side ends, the idle timeout fires or the budget is spent. */
function splice(
  sh: Shared,
  client: Socket,
  upstream: Socket,
  head: Buffer,
  dest: string,
  d: ReturnType<typeof draft>,
) {
  return new Promise<void>((resolve, reject) => {
    let failure: Refusal | undefined;
    const count = (dir: 'sent' | 'received') => (chunk: Buffer) => {
      d.bytes = { ...d.bytes, [dir]: d.bytes[dir] + chunk.length };
      if (!sh.budget.charge(dest, chunk.length)) {
        failure ??= new Refusal(HttpErrorCode.BUDGET, `the byte budget for ${dest} is spent`);
        client.destroy();
        upstream.destroy();
      }
    };
    if (head.length) {
      count('sent')(head);
      upstream.write(head);
    }
    client.on('data', count('sent'));
    upstream.on('data', count('received'));
    client.pipe(upstream);
    upstream.pipe(client);
    const idle = sh.limits.idleTimeoutMs;
    for (const s of [client, upstream]) {
      s.setTimeout(idle, () => {
        failure ??= new Refusal(HttpErrorCode.UPSTREAM_TIMEOUT, `tunnel idle for ${idle} ms`);
        client.destroy();
        upstream.destroy();
      });
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    let closed = 0;
    const done = () => {
      if (++closed < 2) return;
      if (failure) reject(failure);
      else resolve();
    };
    client.once('close', done);
    upstream.once('close', done);
  });
}

/**
 * Reads the first bytes of the tunnel, then hands a stream carrying *all* of them (the
 * sniffed bytes included) to `then`. A JS Duplex over the socket, not the socket itself:
 * TLS and the HTTP parser would otherwise read from the socket's handle and miss bytes
 * already read here.
 */
function intercepted(client: Socket, head: Buffer, then: (inner: Duplex, isTls: boolean) => void): void {
  const begin = (first: Buffer) => {
    const inner = new Duplex({
      read() {
        client.resume();
      },
      write(chunk, enc, cb) {
        client.write(chunk, enc, cb);
      },
      final(cb) {
        client.end();
        cb();
      },
      destroy(err, cb) {
        client.destroy();
        cb(err);
      },
    });
    inner.push(first);
    client.on('data', (c: Buffer) => {
      if (!inner.push(c)) client.pause();
    });
    client.on('end', () => inner.push(null));
    client.on('close', () => inner.destroy());
    client.on('error', () => inner.destroy());
    then(inner, first[0] === 0x16);
  };
  if (head.length) begin(head);
  else client.once('data', begin);
}
