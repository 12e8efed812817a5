/**
 * `membrane policy check-egress`, the pure half: would this URL and method leave? The answer
 * has a fixed shape that outside checks parse — keep it exactly:
 *   {allowed, reason, rule, address: {ip, class} | null}
 * `address` is null when the host is a name and no resolver answers were given (offline);
 * with answers, every one is checked and the first refused one decides (the proxy dials only
 * addresses that were checked, so one bad answer must refuse the request).
 */
import { classifyAddress } from './address.js';
import { type CompiledEgressPolicy, decideAddress, decideRequest } from './rules.js';
import type { AddressClass, Endpoint4Self } from './types.js';

export interface EgressCheck {
  readonly allowed: boolean;
  readonly reason: string;
  readonly rule: string;
  readonly address: { readonly ip: string; readonly class: AddressClass } | null;
}

export interface EgressCheckInput {
  readonly url: string;
  readonly method?: string;
  /** Resolver answers for a host name (undefined = not resolved: the address is not checked). */
  readonly answers?: readonly string[];
  readonly self?: readonly Endpoint4Self[];
}

/** The URL's parts as the proxy will see them, or a reason it cannot be proxied. */
export function parseEgressUrl(
  url: string,
):
  | { ok: true; scheme: 'http' | 'https'; host: string; port: number; path: string }
  | { ok: false; reason: string } {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { ok: false, reason: 'not a URL' };
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    return { ok: false, reason: `scheme ${u.protocol} is not proxied (http and https only)` };
  if (u.username || u.password)
    return { ok: false, reason: 'URLs with user:password are refused (credentials in URLs leak into logs)' };
  const scheme = u.protocol === 'https:' ? 'https' : 'http';
  return {
    ok: true,
    scheme,
    host: u.hostname,
    port: u.port ? Number(u.port) : scheme === 'https' ? 443 : 80,
    path: u.pathname,
  };
}

export function checkEgress(p: CompiledEgressPolicy, input: EgressCheckInput): EgressCheck {
  const u = parseEgressUrl(input.url);
  if (!u.ok) return { allowed: false, reason: u.reason, rule: 'malformed-request', address: null };
  const d = decideRequest(p, {
    method: input.method ?? 'GET',
    scheme: u.scheme,
    host: u.host,
    port: u.port,
    path: u.path,
  });
  if (d.verdict === 'deny') {
    // Refused by the rules: the address is shown for information (the literal, or the
    // first resolver answer that would be refused, else the first answer).
    const ips = d.ip !== undefined ? [d.ip] : (input.answers ?? []);
    const cs = ips.flatMap((ip) => classifyAddress(ip, u.port, input.self) ?? []);
    const c = cs.find((x) => !decideAddress(p, x.ip, u.port, input.self).allowed) ?? cs[0];
    return {
      allowed: false,
      reason: d.reason,
      rule: d.rule,
      address: c ? { ip: c.ip, class: c.class } : null,
    };
  }
  const ips = d.ip !== undefined ? [d.ip] : input.answers;
  if (ips === undefined)
    return {
      allowed: true,
      reason: `${d.reason}; addresses not checked (the host is a name: resolve it to check them)`,
      rule: d.rule,
      address: null,
    };
  if (ips.length === 0)
    return { allowed: false, reason: `${d.host} has no addresses`, rule: 'no-address', address: null };
  const decisions = ips.map((ip) => decideAddress(p, ip, u.port, input.self));
  const refused = decisions.find((a) => !a.allowed);
  const a = refused ?? decisions[0]!;
  if (refused)
    return {
      allowed: false,
      reason: `${refused.reason}${ips.length > 1 ? ` (one of ${ips.length} addresses of ${d.host})` : ''}`,
      rule: refused.rule ?? `address:${refused.class}`,
      address: { ip: a.ip, class: a.class },
    };
  return {
    allowed: true,
    reason: `${d.reason}; ${a.reason}`,
    rule: d.rule,
    address: { ip: a.ip, class: a.class },
  };
}
