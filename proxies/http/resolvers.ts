/**
 * Name resolution and dialing, the two injected I/O edges. The default resolver is the
 * system's (getaddrinfo through node:dns lookup, every answer); `dnsResolver` asks given
 * DNS servers directly (A and AAAA), for deployments with a dedicated resolver and for
 * tests with a stub DNS server on loopback. The dialer connects to exactly the IP given.
 */
import { Resolver as DnsResolver, lookup } from 'node:dns/promises';
import { connect } from 'node:net';
import type { Dialer, ResolvedAddress, Resolver } from './ports.js';

export const systemResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => ({
    address: a.address,
    family: a.family === 6 ? 6 : 4,
  }));

/** Asks `servers` (e.g. ['127.0.0.1:5353']) for A and AAAA records; either may be absent. */
export function dnsResolver(servers: string[], timeoutMs = 5000): Resolver {
  const r = new DnsResolver({ timeout: timeoutMs, tries: 2 });
  r.setServers(servers);
  return async (host) => {
    const [a, aaaa] = await Promise.allSettled([r.resolve4(host), r.resolve6(host)]);
    const out: ResolvedAddress[] = [];
    if (a.status === 'fulfilled') for (const ip of a.value) out.push({ address: ip, family: 4 });
    if (aaaa.status === 'fulfilled') for (const ip of aaaa.value) out.push({ address: ip, family: 6 });
    if (out.length === 0 && a.status === 'rejected') throw a.reason;
    return out;
  };
}

export const directDialer: Dialer = (ip, port) => connect({ host: ip, port, noDelay: true });
