/**
 * Host normalisation before any rule is matched: what the app wrote (`EXAMPLE.com.`,
 * `bücher.de`, `[::FFFF:127.0.0.1]`, `0x7f.1`, `2130706433`, `0177.0.0.1`, `127.1`) becomes
 * the one form rules are written in — lower-case IDNA A-labels without a trailing dot, a
 * dotted-quad IPv4 address, or an RFC 5952 IPv6 address. Rules and the resolver then see the
 * same host the upstream will: `0x7f.1` cannot slip past a rule about 127.0.0.1.
 *
 * The WHATWG URL host parser does the heavy lifting (it is what browsers, Node's fetch and
 * undici use, so we agree with the client on what a host means): IDNA (UTS #46), percent-
 * decoding, and the IPv4 number forms. It is pure (no I/O). Characters that would change how
 * the URL around the host parses (`/ ? # @ \` and so on) are refused before it runs.
 */
import { canonicalIp, parseIp } from './address.js';

export type NormalisedHost =
  | { readonly ok: true; readonly host: string; readonly kind: 'name' }
  | { readonly ok: true; readonly host: string; readonly kind: 'ipv4' | 'ipv6'; readonly ip: string }
  | { readonly ok: false; readonly reason: string };

const fail = (reason: string): NormalisedHost => ({ ok: false, reason });

// Anything that would end or re-shape the authority of `http://<host>/`, whitespace and controls.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused
const FORBIDDEN = /[\u0000-\u0020\u007f/\\?#@%<>^|"'`{}[\]]/;
const LDH = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Normalises a host as the app wrote it. Never throws: a malformed host comes back with a reason. */
export function normaliseHost(input: string): NormalisedHost {
  if (typeof input !== 'string' || input.length === 0) return fail('empty host');
  if (input.length > 300) return fail('host longer than 253 characters');

  // IPv6 literal: brackets (as in URLs, Host headers and CONNECT targets) or bare.
  const inner = input.startsWith('[') && input.endsWith(']') ? input.slice(1, -1) : input;
  if (inner.includes(':')) {
    if (inner.includes('%')) return fail('IPv6 zone identifiers are not accepted');
    const a = parseIp(inner);
    if (a?.kind() !== 'ipv6') return fail(`malformed IPv6 literal ${JSON.stringify(input.slice(0, 64))}`);
    const ip = canonicalIp(a);
    return { ok: true, host: ip, kind: 'ipv6', ip };
  }
  if (inner !== input) return fail('brackets hold IPv6 addresses only');
  if (FORBIDDEN.test(input)) return fail(`host contains a character not allowed in a host name`);

  let host: string;
  try {
    host = new URL(`http://${input}/`).hostname;
  } catch {
    // WHATWG refuses e.g. `1.2.3.4.5`, out-of-range IPv4 numbers, invalid IDNA.
    return fail(`not a valid host name or IPv4 address: ${JSON.stringify(input.slice(0, 64))}`);
  }
  if (host.startsWith('[')) return fail('unexpected IPv6 literal');
  // The URL parser folds IPv4 number forms into a dotted quad: that is an address now.
  const a = parseIp(host);
  if (a && a.kind() === 'ipv4') {
    const ip = canonicalIp(a);
    return { ok: true, host: ip, kind: 'ipv4', ip };
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0) return fail('empty host');
  if (host.length > 253) return fail('host longer than 253 characters');
  const labels = host.split('.');
  for (const l of labels) {
    if (l.length === 0) return fail('empty label in host name');
    if (!LDH.test(l)) return fail(`label ${JSON.stringify(l.slice(0, 64))} is not a DNS label`);
  }
  // A name whose last label is all digits would be a (rejected) IPv4 form to some parsers.
  if (/^\d+$/.test(labels[labels.length - 1]!)) return fail('numeric top-level label');
  return { ok: true, host, kind: 'name' };
}
