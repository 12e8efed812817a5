/**
 * Address classification for egress: which class does a resolved IP belong to, and so may the
 * proxy dial it? Only `public` is dialable by default (rules.ts applies allowAddresses and
 * user denies on top).
 *
 * The tables are the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890 and
 * the later registrations up to RFC 9637 / RFC 9602 / RFC 9665 / RFC 9780), plus the blocks
 * that live in other registries but matter to an egress filter: IPv4 multicast 224/4,
 * IPv6 multicast ff00::/8, the deprecated site-local fec0::/10 and IPv4-compatible ::/96,
 * and everything outside IPv6 global unicast 2000::/3 (reserved by the IETF). Smokescreen's
 * table leaves 0/8, 192.0.0/24, the TEST-NETs, 198.18/15, 240/4, fec0::/10, 64:ff9b:1::/48
 * and ::/96 open; these rows close them.
 *
 * IPv4 embedded in IPv6 is decoded and classified, because the kernel or a translator on
 * the path turns `::ffff:127.0.0.1`, `64:ff9b::a00:1` or a 6to4/Teredo address into a
 * connection to the embedded IPv4 host: an embedding never makes an address more dialable
 * than the IPv4 address it carries.
 *
 * Cloud metadata and platform endpoints are their own class, checked before everything
 * else: 168.63.129.16 (Azure WireServer) is a *public* address, so a registry table alone
 * would let it through.
 *
 * Parsing is strict (ipaddr.js): dotted-quad IPv4 and IPv6 without a zone. Alternative IPv4
 * literals (`0x7f.1`, `2130706433`) are a host-name concern (host.ts), not a resolver answer.
 */
import ipaddr from 'ipaddr.js';
import type { AddressClass, Endpoint4Self } from './types.js';

type IPv4 = ipaddr.IPv4;
type IPv6 = ipaddr.IPv6;
export type ParsedIp = IPv4 | IPv6;

interface Block {
  readonly cidr: string;
  /** The registry's name for the block. */
  readonly name: string;
  readonly class: AddressClass | Embedding;
  readonly ref: string;
}

/** How an IPv6 block carries an IPv4 address. */
type Embedding = 'ipv4-mapped' | 'ipv4-compatible' | 'nat64' | 'nat64-local' | '6to4' | 'teredo';

/** Platform endpoints: instance metadata, host agents, platform DNS. Exact addresses. */
export const CLOUD_METADATA: readonly Block[] = [
  {
    cidr: '169.254.169.254/32',
    name: 'Instance metadata (AWS, Azure, GCP, OCI)',
    class: 'cloud-metadata',
    ref: 'vendor',
  },
  { cidr: '169.254.170.2/32', name: 'AWS ECS task metadata', class: 'cloud-metadata', ref: 'vendor' },
  { cidr: '169.254.170.23/32', name: 'AWS EKS Pod Identity agent', class: 'cloud-metadata', ref: 'vendor' },
  {
    cidr: '168.63.129.16/32',
    name: 'Azure WireServer / platform DNS',
    class: 'cloud-metadata',
    ref: 'vendor',
  },
  { cidr: '100.100.100.200/32', name: 'Alibaba Cloud metadata', class: 'cloud-metadata', ref: 'vendor' },
  { cidr: '192.0.0.192/32', name: 'OCI metadata (legacy address)', class: 'cloud-metadata', ref: 'vendor' },
  { cidr: 'fd00:ec2::254/128', name: 'AWS instance metadata (IPv6)', class: 'cloud-metadata', ref: 'vendor' },
  {
    cidr: 'fd00:ec2::23/128',
    name: 'AWS EKS Pod Identity agent (IPv6)',
    class: 'cloud-metadata',
    ref: 'vendor',
  },
];

/** IANA IPv4 Special-Purpose Address Registry, plus multicast (RFC 5771). */
export const IPV4_SPECIAL: readonly Block[] = [
  { cidr: '0.0.0.0/8', name: '"This network"', class: 'this-network', ref: 'RFC 791' },
  { cidr: '0.0.0.0/32', name: '"This host on this network"', class: 'unspecified', ref: 'RFC 1122' },
  { cidr: '10.0.0.0/8', name: 'Private-Use', class: 'private', ref: 'RFC 1918' },
  { cidr: '100.64.0.0/10', name: 'Shared Address Space', class: 'shared-address-space', ref: 'RFC 6598' },
  { cidr: '127.0.0.0/8', name: 'Loopback', class: 'loopback', ref: 'RFC 1122' },
  { cidr: '169.254.0.0/16', name: 'Link Local', class: 'link-local', ref: 'RFC 3927' },
  { cidr: '172.16.0.0/12', name: 'Private-Use', class: 'private', ref: 'RFC 1918' },
  {
    cidr: '192.0.0.0/24',
    name: 'IETF Protocol Assignments',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 6890',
  },
  {
    cidr: '192.0.0.0/29',
    name: 'IPv4 Service Continuity Prefix',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 7335',
  },
  { cidr: '192.0.0.8/32', name: 'IPv4 dummy address', class: 'ietf-protocol-assignments', ref: 'RFC 7600' },
  // Globally reachable anycast, but a protocol's address, never an HTTP upstream.
  {
    cidr: '192.0.0.9/32',
    name: 'Port Control Protocol Anycast',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 7723',
  },
  {
    cidr: '192.0.0.10/32',
    name: 'Traversal Using Relays around NAT Anycast',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 8155',
  },
  {
    cidr: '192.0.0.170/32',
    name: 'NAT64/DNS64 Discovery',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 7050',
  },
  {
    cidr: '192.0.0.171/32',
    name: 'NAT64/DNS64 Discovery',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 7050',
  },
  { cidr: '192.0.2.0/24', name: 'Documentation (TEST-NET-1)', class: 'documentation', ref: 'RFC 5737' },
  // Globally reachable per the registry: public.
  { cidr: '192.31.196.0/24', name: 'AS112-v4', class: 'public', ref: 'RFC 7535' },
  { cidr: '192.52.193.0/24', name: 'AMT', class: 'public', ref: 'RFC 7450' },
  { cidr: '192.88.99.0/24', name: 'Deprecated (6to4 Relay Anycast)', class: 'reserved', ref: 'RFC 7526' },
  { cidr: '192.88.99.2/32', name: '6a44-relay anycast address', class: 'reserved', ref: 'RFC 6751' },
  { cidr: '192.168.0.0/16', name: 'Private-Use', class: 'private', ref: 'RFC 1918' },
  { cidr: '192.175.48.0/24', name: 'Direct Delegation AS112 Service', class: 'public', ref: 'RFC 7534' },
  { cidr: '198.18.0.0/15', name: 'Benchmarking', class: 'benchmarking', ref: 'RFC 2544' },
  { cidr: '198.51.100.0/24', name: 'Documentation (TEST-NET-2)', class: 'documentation', ref: 'RFC 5737' },
  { cidr: '203.0.113.0/24', name: 'Documentation (TEST-NET-3)', class: 'documentation', ref: 'RFC 5737' },
  { cidr: '224.0.0.0/4', name: 'Multicast', class: 'multicast', ref: 'RFC 5771' },
  { cidr: '240.0.0.0/4', name: 'Reserved', class: 'reserved', ref: 'RFC 1112' },
  { cidr: '255.255.255.255/32', name: 'Limited Broadcast', class: 'broadcast', ref: 'RFC 919' },
];

/** IANA IPv6 Special-Purpose Address Registry, plus the IPv6 address-space registry's non-unicast rows. */
export const IPV6_SPECIAL: readonly Block[] = [
  // Everything outside global unicast 2000::/3 is "Reserved by IETF" unless a row below says otherwise.
  { cidr: '::/0', name: 'Reserved by IETF (outside 2000::/3)', class: 'reserved', ref: 'RFC 4291' },
  { cidr: '2000::/3', name: 'Global Unicast', class: 'public', ref: 'RFC 4291' },
  { cidr: '::/128', name: 'Unspecified Address', class: 'unspecified', ref: 'RFC 4291' },
  { cidr: '::1/128', name: 'Loopback Address', class: 'loopback', ref: 'RFC 4291' },
  { cidr: '::ffff:0:0/96', name: 'IPv4-mapped Address', class: 'ipv4-mapped', ref: 'RFC 4291' },
  { cidr: '::/96', name: 'IPv4-compatible Address (deprecated)', class: 'ipv4-compatible', ref: 'RFC 4291' },
  { cidr: '64:ff9b::/96', name: 'IPv4-IPv6 Translat.', class: 'nat64', ref: 'RFC 6052' },
  { cidr: '64:ff9b:1::/48', name: 'IPv4-IPv6 Translat. (local-use)', class: 'nat64-local', ref: 'RFC 8215' },
  { cidr: '100::/64', name: 'Discard-Only Address Block', class: 'discard-only', ref: 'RFC 6666' },
  { cidr: '100:0:0:1::/64', name: 'Dummy IPv6 Prefix', class: 'reserved', ref: 'RFC 9780' },
  {
    cidr: '2001::/23',
    name: 'IETF Protocol Assignments',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 2928',
  },
  { cidr: '2001::/32', name: 'TEREDO', class: 'teredo', ref: 'RFC 4380' },
  {
    cidr: '2001:1::1/128',
    name: 'Port Control Protocol Anycast',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 7723',
  },
  {
    cidr: '2001:1::2/128',
    name: 'Traversal Using Relays around NAT Anycast',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 8155',
  },
  {
    cidr: '2001:1::3/128',
    name: 'DNS-SD Service Registration Protocol Anycast',
    class: 'ietf-protocol-assignments',
    ref: 'RFC 9665',
  },
  { cidr: '2001:2::/48', name: 'Benchmarking', class: 'benchmarking', ref: 'RFC 5180' },
  { cidr: '2001:3::/32', name: 'AMT', class: 'public', ref: 'RFC 7450' },
  { cidr: '2001:4:112::/48', name: 'AS112-v6', class: 'public', ref: 'RFC 7535' },
  // ORCHIDs and DETs are identifiers, not locators: nothing listens there.
  { cidr: '2001:10::/28', name: 'Deprecated (previously ORCHID)', class: 'orchid', ref: 'RFC 4843' },
  { cidr: '2001:20::/28', name: 'ORCHIDv2', class: 'orchid', ref: 'RFC 7343' },
  {
    cidr: '2001:30::/28',
    name: 'Drone Remote ID Protocol Entity Tags (DETs) Prefix',
    class: 'orchid',
    ref: 'RFC 9374',
  },
  { cidr: '2001:db8::/32', name: 'Documentation', class: 'documentation', ref: 'RFC 3849' },
  { cidr: '2002::/16', name: '6to4', class: '6to4', ref: 'RFC 3056' },
  { cidr: '2620:4f:8000::/48', name: 'Direct Delegation AS112 Service', class: 'public', ref: 'RFC 7534' },
  { cidr: '3fff::/20', name: 'Documentation', class: 'documentation', ref: 'RFC 9637' },
  { cidr: '5f00::/16', name: 'Segment Routing (SRv6) SIDs', class: 'reserved', ref: 'RFC 9602' },
  { cidr: 'fc00::/7', name: 'Unique-Local', class: 'unique-local', ref: 'RFC 4193' },
  { cidr: 'fe80::/10', name: 'Link-Local Unicast', class: 'link-local', ref: 'RFC 4291' },
  { cidr: 'fec0::/10', name: 'Site-Local (deprecated)', class: 'site-local', ref: 'RFC 3879' },
  { cidr: 'ff00::/8', name: 'Multicast', class: 'multicast', ref: 'RFC 4291' },
];

interface Compiled4 {
  readonly net: number;
  readonly mask: number;
  readonly bits: number;
  readonly block: Block;
}
interface Compiled6 {
  readonly range: [IPv6, number];
  readonly block: Block;
}

const toU32 = (a: IPv4): number =>
  ((a.octets[0]! << 24) | (a.octets[1]! << 16) | (a.octets[2]! << 8) | a.octets[3]!) >>> 0;
const maskOf = (bits: number): number => (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);

// Longest prefix first: the first matching row is the most specific one.
const V4: readonly Compiled4[] = [...CLOUD_METADATA, ...IPV4_SPECIAL]
  .filter((b) => !b.cidr.includes(':'))
  .map((block) => {
    const [addr, bits] = ipaddr.IPv4.parseCIDR(block.cidr);
    return { net: (toU32(addr) & maskOf(bits)) >>> 0, mask: maskOf(bits), bits, block };
  })
  .sort((a, b) => b.bits - a.bits);
const V6: readonly Compiled6[] = [...CLOUD_METADATA, ...IPV6_SPECIAL]
  .filter((b) => b.cidr.includes(':'))
  .map((block) => ({ range: ipaddr.IPv6.parseCIDR(block.cidr), block }))
  .sort((a, b) => b.range[1] - a.range[1]);

export interface AddressClassification {
  /** Canonical text: dotted quad, or RFC 5952 IPv6. */
  readonly ip: string;
  readonly class: AddressClass;
  /** The registry row that decided, e.g. `192.0.2.0/24 Documentation (TEST-NET-1)`. */
  readonly block: string;
  /** The IPv4 address an IPv6 address carries, and how, when that decided the class. */
  readonly embedded?: { readonly ip: string; readonly via: Embedding | 'teredo-server' };
}

const DOTTED_QUAD =
  /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;
const IPV6_CHARS = /^[0-9A-Fa-f:.]{2,45}$/;

/**
 * Strict parse: dotted-quad IPv4 (no leading zeros) or IPv6 without zone. Undefined for
 * anything else; never throws. Gated by regexes so that the common "not an address" answer
 * costs no exception (ipaddr.js's isValid throws internally, which is slow on a hot path).
 */
export function parseIp(text: string): ParsedIp | undefined {
  if (typeof text !== 'string') return undefined;
  const q = DOTTED_QUAD.exec(text);
  if (q) return new ipaddr.IPv4([Number(q[1]), Number(q[2]), Number(q[3]), Number(q[4])]);
  if (!IPV6_CHARS.test(text) || !text.includes(':')) return undefined;
  // ipaddr.js reads `::1.2.3.4` as the IPv4-*mapped* ::ffff:1.2.3.4, while inet_pton (and so
  // the kernel) reads it as the IPv4-compatible ::102:304: write a trailing dotted quad as two
  // hex groups first so that we classify the address the socket would dial.
  let hex = text;
  const tail = /:((?:\d{1,3}\.){3}\d{1,3})$/.exec(text);
  if (tail) {
    const q = DOTTED_QUAD.exec(tail[1]!);
    if (!q) return undefined;
    const [a, b, c, d] = [q[1], q[2], q[3], q[4]].map(Number) as [number, number, number, number];
    hex = `${text.slice(0, tail.index + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  try {
    return ipaddr.IPv6.parse(hex);
  } catch {
    return undefined;
  }
}

export const canonicalIp = (a: ParsedIp): string => a.toString();

const describeBlock = (b: Block) => `${b.cidr} ${b.name}`;

function lookup4(a: IPv4): Block {
  const u = toU32(a);
  for (const r of V4) if ((u & r.mask) >>> 0 === r.net) return r.block;
  return { cidr: '0.0.0.0/0', name: 'Global unicast', class: 'public', ref: 'RFC 791' };
}

function lookup6(a: IPv6): Block {
  for (const r of V6) if (a.match(r.range)) return r.block;
  /* c8 ignore next: ::/0 matches everything */
  return IPV6_SPECIAL[0]!;
}

const v4From = (hi: number, lo: number): IPv4 =>
  new ipaddr.IPv4([(hi >> 8) & 255, hi & 255, (lo >> 8) & 255, lo & 255]);

/** The IPv4 addresses an embedding block carries (several when the layout is ambiguous). */
function embeddedOf(a: IPv6, how: Embedding): Array<{ ip: IPv4; via: Embedding | 'teredo-server' }> {
  const p = a.parts;
  switch (how) {
    case 'ipv4-mapped':
    case 'ipv4-compatible':
    case 'nat64':
      return [{ ip: v4From(p[6]!, p[7]!), via: how }];
    case 'nat64-local':
      // RFC 8215 lets a network use any RFC 6052 prefix length inside 64:ff9b:1::/48; decode
      // the /48 layout (octets around the reserved "u" byte) and the /96 one, check both.
      // A layout that decodes to all zeros is the other layout's padding, not an address.
      return [
        { ip: new ipaddr.IPv4([p[3]! >> 8, p[3]! & 255, p[4]! & 255, p[5]! >> 8]), via: how },
        { ip: v4From(p[6]!, p[7]!), via: how },
      ].filter(
        (e, _, all) => e.ip.toString() !== '0.0.0.0' || all.every((x) => x.ip.toString() === '0.0.0.0'),
      );
    case '6to4':
      return [{ ip: v4From(p[1]!, p[2]!), via: how }];
    case 'teredo':
      // 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC — the client address is stored inverted.
      return [
        { ip: v4From(~p[6]! & 0xffff, ~p[7]! & 0xffff), via: 'teredo' },
        { ip: v4From(p[2]!, p[3]!), via: 'teredo-server' },
      ];
  }
}

/** What an embedding block is when every IPv4 address it carries is public. */
const EMBEDDING_PUBLIC_CLASS: Record<Embedding, AddressClass> = {
  'ipv4-mapped': 'public', // the kernel dials the IPv4 address itself
  nat64: 'public', // the well-known prefix translates to the global IPv4 Internet
  '6to4': 'public',
  // Deprecated, never routed: nothing legitimate lives there.
  'ipv4-compatible': 'reserved',
  // A translator inside someone's network (RFC 8215 "local-use"): as private as 10/8.
  'nat64-local': 'private',
  // Teredo sits in 2001::/23 (not globally reachable per the registry).
  teredo: 'ietf-protocol-assignments',
};

function classify6(a: IPv6): AddressClassification {
  const block = lookup6(a);
  const ip = a.toString();
  const c = block.class;
  if (
    c === 'ipv4-mapped' ||
    c === 'ipv4-compatible' ||
    c === 'nat64' ||
    c === 'nat64-local' ||
    c === '6to4' ||
    c === 'teredo'
  ) {
    for (const e of embeddedOf(a, c)) {
      const inner = classify4(e.ip);
      if (inner.class !== 'public')
        return {
          ip,
          class: inner.class,
          block: `${describeBlock(block)} carrying ${inner.block}`,
          embedded: { ip: inner.ip, via: e.via },
        };
    }
    const first = embeddedOf(a, c)[0]!;
    return {
      ip,
      class: EMBEDDING_PUBLIC_CLASS[c],
      block: describeBlock(block),
      embedded: { ip: first.ip.toString(), via: first.via },
    };
  }
  return { ip, class: c as AddressClass, block: describeBlock(block) };
}

function classify4(a: IPv4): AddressClassification {
  const block = lookup4(a);
  return { ip: a.toString(), class: block.class as AddressClass, block: describeBlock(block) };
}

/** Classifies a parsed address (registry, embeddings, platform endpoints). */
export function classifyParsed(a: ParsedIp): AddressClassification {
  return a.kind() === 'ipv4' ? classify4(a as IPv4) : classify6(a as IPv6);
}

/**
 * Classifies an address, `self` included: an address equal to one of Membrane's own
 * listeners on the same port (a listener on 0.0.0.0 / :: counts for every loopback and
 * unspecified address). Undefined when `text` is not an IP address.
 */
export function classifyAddress(
  text: string,
  port?: number,
  self: readonly Endpoint4Self[] = [],
): AddressClassification | undefined {
  const a = parseIp(text);
  if (!a) return undefined;
  const c = classifyParsed(a);
  if (port !== undefined && self.length > 0 && isSelfAddress(a, c, port, self))
    return { ...c, class: 'self', block: `Membrane's own listener (${c.block})` };
  return c;
}

/** The IPv4 address behind an IPv4-mapped IPv6 address (the same host), else the address. */
export function unmapped(a: ParsedIp): ParsedIp {
  return a.kind() === 'ipv6' && (a as IPv6).isIPv4MappedAddress() ? (a as IPv6).toIPv4Address() : a;
}

export function isSelfAddress(
  a: ParsedIp,
  c: AddressClassification,
  port: number,
  self: readonly Endpoint4Self[],
): boolean {
  const mine = unmapped(a).toString();
  for (const l of self) {
    if (l.port !== port) continue;
    const h = l.host.startsWith('[') && l.host.endsWith(']') ? l.host.slice(1, -1) : l.host;
    const lp = parseIp(h === 'localhost' ? '127.0.0.1' : h);
    if (!lp) continue;
    const lc = classifyParsed(lp);
    if (lc.class === 'unspecified') {
      if (c.class === 'loopback' || c.class === 'unspecified') return true;
    } else if (unmapped(lp).toString() === mine) return true;
  }
  return false;
}

/** An `allowAddresses` entry or an IP/CIDR rule host: a range, and optionally one port. */
export interface AddressPattern {
  readonly text: string;
  readonly range: [ParsedIp, number];
  readonly port?: number;
  /** A single address (/32, /128, IP or IP:port), not a wider range. */
  readonly exact: boolean;
}

/**
 * Parses `IP`, `IP:port`, `[IPv6]:port` or `CIDR`. Returns a reason string when malformed.
 * A CIDR's address must be the network address (`10.0.0.0/8`, not `10.1.2.3/8`): a typo
 * there would silently widen the exception.
 */
export function parseAddressPattern(text: string): AddressPattern | string {
  if (typeof text !== 'string' || text.length === 0 || text.length > 64)
    return 'expected an IP address, IP:port or CIDR';
  let host = text;
  let port: number | undefined;
  const bracket = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(text);
  if (bracket) {
    host = bracket[1]!;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
    if (!host.includes(':')) return 'expected an IPv6 address inside brackets';
  } else if (/^[0-9.]+:\d{1,5}$/.test(text)) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    port = Number(text.slice(i + 1));
  }
  if (port !== undefined && (port < 1 || port > 65535)) return 'expected a port from 1 to 65535';
  const slash = host.indexOf('/');
  if (slash >= 0) {
    if (port !== undefined) return 'expected a CIDR without a port (IP:port names one address)';
    const a = parseIp(host.slice(0, slash));
    const bitsText = host.slice(slash + 1);
    if (!a || !/^\d{1,3}$/.test(bitsText)) return 'expected a CIDR such as 10.0.0.0/8 or fd00::/8';
    const bits = Number(bitsText);
    const max = a.kind() === 'ipv4' ? 32 : 128;
    if (bits > max) return `expected a prefix length from 0 to ${max}`;
    const network =
      a.kind() === 'ipv4'
        ? ipaddr.IPv4.networkAddressFromCIDR(`${a.toString()}/${bits}`)
        : ipaddr.IPv6.networkAddressFromCIDR(`${a.toString()}/${bits}`);
    if (network.toString() !== a.toString())
      return `expected the network address of the range (${network.toString()}/${bits}), got host bits set`;
    return { text, range: [a, bits], exact: bits === max };
  }
  const a = parseIp(host);
  if (!a) return 'expected an IP address, IP:port or CIDR';
  return {
    text,
    range: [a, a.kind() === 'ipv4' ? 32 : 128],
    ...(port !== undefined ? { port } : {}),
    exact: true,
  };
}

/** True when `a` lies in the pattern's range (same family only) and the port matches. */
export function patternMatches(p: AddressPattern, a: ParsedIp, port: number | undefined): boolean {
  if (p.port !== undefined && p.port !== port) return false;
  const [net, bits] = p.range;
  return net.kind() === a.kind() && a.match(net, bits);
}
