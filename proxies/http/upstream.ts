/**
 * The one way out: resolve once, check every answer, dial exactly the checked address.
 *
 * There is no second lookup anywhere on the path — undici gets a connect function that
 * dials the IP this module checked (TLS, when used, names the host for SNI and the
 * certificate check) — so a name that answers differently the second time (DNS
 * rebinding) cannot reach an address the policy refused. Every answer is checked and
 * one denied answer refuses the whole name: a name that mixes a public and a private
 * address is either misconfigured or an attack, and both fail closed.
 */
import { createHash } from 'node:crypto';
import { isIP, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { type Dispatcher, Pool } from 'undici';
import type { AddressClass, TlsSettings } from '../../policy/egress/types.js';
import type { OwnListener } from '../proxy.js';
import { HttpErrorCode } from './errors.js';
import type { Dialer, EgressEngine, Resolver, TlsToolkit } from './ports.js';
import { Refusal } from './refusals.js';

export interface CheckedAddress {
  readonly ip: string;
  readonly class: AddressClass;
}

export async function resolveChecked(
  engine: EgressEngine,
  resolver: Resolver,
  self: readonly OwnListener[],
  host: string,
  literalIp: string | undefined,
  port: number,
): Promise<CheckedAddress> {
  let answers: string[];
  if (literalIp !== undefined) answers = [literalIp];
  else if (isIP(host)) answers = [host];
  else {
    try {
      answers = (await resolver(host)).map((a) => a.address);
    } catch (e) {
      const code = (e as { code?: string }).code ?? 'error';
      throw new Refusal(HttpErrorCode.UPSTREAM_FAILED, `${host} did not resolve (${code})`, {
        check: 'dns',
        cause: e,
      });
    }
  }
  if (answers.length === 0)
    throw new Refusal(HttpErrorCode.UPSTREAM_FAILED, `${host} resolved to no address`, { check: 'dns' });
  let first: CheckedAddress | undefined;
  for (const ip of answers) {
    const d = engine.decideAddress(ip, port, self);
    if (!d.allowed)
      throw new Refusal(
        HttpErrorCode.ADDRESS_DENIED,
        `${host} resolves to ${d.ip} (${d.class}): ${d.reason}`,
        {
          check: `address.${d.class}`,
        },
      );
    first ??= { ip: d.ip, class: d.class };
  }
  return first as CheckedAddress;
}

/** TCP to exactly `ip`, with the connect timeout; Nagle off (request/response path). */
export function dialChecked(dial: Dialer, ip: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = dial(ip, port);
    socket.setNoDelay(true);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Refusal(
          HttpErrorCode.UPSTREAM_TIMEOUT,
          `connect to ${ip}:${port} timed out after ${timeoutMs} ms`,
        ),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      reject(
        new Refusal(
          HttpErrorCode.UPSTREAM_FAILED,
          `connect to ${ip}:${port} failed (${e.code ?? e.message})`,
          {
            cause: e,
          },
        ),
      );
    });
  });
}

export interface UpstreamTarget {
  readonly host: string;
  readonly port: number;
  readonly address: CheckedAddress;
  /** Verified TLS to the upstream (the app's scheme was https, or the rule is trusted/secure). */
  readonly tls: boolean;
  readonly tlsSettings?: TlsSettings;
}

export interface PoolOptions {
  readonly dial: Dialer;
  readonly toolkit: Pick<TlsToolkit, 'connectUpstreamTls'> | undefined;
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
}

/**
 * Keep-alive pools per (scheme, host, port, checked IP, TLS settings). A pool only ever
 * dials its own checked IP, so reuse cannot carry a request to an address that was not
 * checked for it.
 */
export class UpstreamPools {
  private readonly pools = new Map<string, Pool>();
  constructor(private readonly opts: PoolOptions) {}

  get(t: UpstreamTarget): Dispatcher {
    const tlsKey = t.tls
      ? createHash('sha256')
          .update(JSON.stringify([t.tlsSettings?.ca ?? '', t.tlsSettings?.pins ?? []]))
          .digest('hex')
      : '';
    const key = `${t.tls ? 'https' : 'http'}|${t.host}|${t.port}|${t.address.ip}|${tlsKey}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = this.create(t);
      this.pools.set(key, pool);
    }
    return pool;
  }

  private create(t: UpstreamTarget): Pool {
    const { dial, toolkit, connectTimeoutMs } = this.opts;
    const authority = t.host.includes(':') ? `[${t.host}]` : t.host;
    const origin = `${t.tls ? 'https' : 'http'}://${authority}:${t.port}`;
    return new Pool(origin, {
      connections: 32,
      pipelining: 1,
      keepAliveTimeout: this.opts.idleTimeoutMs,
      headersTimeout: this.opts.headersTimeoutMs,
      bodyTimeout: this.opts.idleTimeoutMs,
      connect: (_options, callback) => {
        dialChecked(dial, t.address.ip, t.port, connectTimeoutMs)
          .then(async (socket): Promise<Socket | TLSSocket> => {
            if (!t.tls) return socket;
            if (!toolkit) {
              socket.destroy();
              throw new Refusal(HttpErrorCode.NOT_INSPECTABLE, 'upstream TLS is not available in this build');
            }
            try {
              return await toolkit.connectUpstreamTls({
                socket,
                servername: t.host,
                tls: t.tlsSettings,
                timeoutMs: connectTimeoutMs,
              });
            } catch (e) {
              socket.destroy();
              throw e;
            }
          })
          .then(
            (s) => callback(null, s),
            (e: Error) => callback(e, null),
          );
      },
    });
  }

  async close(): Promise<void> {
    const all = [...this.pools.values()];
    this.pools.clear();
    await Promise.allSettled(all.map((p) => p.destroy()));
  }
}
