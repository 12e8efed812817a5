import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyAddress, parseAddressPattern } from '../../../policy/egress/address.js';
import { compileEgressPolicy, decideAddress } from '../../../policy/egress/rules.js';
import { parseEgressPolicy } from '../../../policy/egress/schema.js';
import type { AddressClass } from '../../../policy/egress/types.js';

/**
 * [address, expected class]: every IANA special-purpose block (IPv4 and IPv6) with both edges
 * of its range, the blocks around them, every IPv4-in-IPv6 embedding, platform endpoints.
 */
const TABLE: ReadonlyArray<readonly [string, AddressClass]> = [
  // 0.0.0.0/8 "this network", 0.0.0.0/32 "this host"
  ['0.0.0.0', 'unspecified'],
  ['0.0.0.1', 'this-network'],
  ['0.255.255.255', 'this-network'],
  ['1.0.0.0', 'public'],
  // 10/8
  ['9.255.255.255', 'public'],
  ['10.0.0.0', 'private'],
  ['10.255.255.255', 'private'],
  ['11.0.0.0', 'public'],
  // 100.64/10 shared address space
  ['100.63.255.255', 'public'],
  ['100.64.0.0', 'shared-address-space'],
  ['100.127.255.255', 'shared-address-space'],
  ['100.128.0.0', 'public'],
  // 127/8
  ['126.255.255.255', 'public'],
  ['127.0.0.0', 'loopback'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.255', 'loopback'],
  ['128.0.0.0', 'public'],
  // 169.254/16
  ['169.253.255.255', 'public'],
  ['169.254.0.0', 'link-local'],
  ['169.254.255.255', 'link-local'],
  ['169.255.0.0', 'public'],
  // 172.16/12
  ['172.15.255.255', 'public'],
  ['172.16.0.0', 'private'],
  ['172.31.255.255', 'private'],
  ['172.32.0.0', 'public'],
  // 192.0.0/24 and its registrations
  ['191.255.255.255', 'public'],
  ['192.0.0.0', 'ietf-protocol-assignments'],
  ['192.0.0.7', 'ietf-protocol-assignments'],
  ['192.0.0.8', 'ietf-protocol-assignments'],
  ['192.0.0.9', 'ietf-protocol-assignments'],
  ['192.0.0.10', 'ietf-protocol-assignments'],
  ['192.0.0.170', 'ietf-protocol-assignments'],
  ['192.0.0.171', 'ietf-protocol-assignments'],
  ['192.0.0.255', 'ietf-protocol-assignments'],
  ['192.0.1.0', 'public'],
  // TEST-NET-1
  ['192.0.2.0', 'documentation'],
  ['192.0.2.255', 'documentation'],
  ['192.0.3.0', 'public'],
  // AS112-v4, AMT: globally reachable per the registry
  ['192.31.196.0', 'public'],
  ['192.52.193.255', 'public'],
  // 6to4 relay anycast (deprecated) and 6a44
  ['192.88.98.255', 'public'],
  ['192.88.99.0', 'reserved'],
  ['192.88.99.2', 'reserved'],
  ['192.88.99.255', 'reserved'],
  ['192.88.100.0', 'public'],
  // 192.168/16
  ['192.167.255.255', 'public'],
  ['192.168.0.0', 'private'],
  ['192.168.255.255', 'private'],
  ['192.169.0.0', 'public'],
  ['192.175.48.1', 'public'],
  // 198.18/15 benchmarking
  ['198.17.255.255', 'public'],
  ['198.18.0.0', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.20.0.0', 'public'],
  // TEST-NET-2, TEST-NET-3
  ['198.51.100.0', 'documentation'],
  ['198.51.100.255', 'documentation'],
  ['203.0.112.255', 'public'],
  ['203.0.113.0', 'documentation'],
  ['203.0.113.255', 'documentation'],
  ['203.0.114.0', 'public'],
  // multicast, reserved, broadcast
  ['223.255.255.255', 'public'],
  ['224.0.0.0', 'multicast'],
  ['239.255.255.255', 'multicast'],
  ['240.0.0.0', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  // ordinary public
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  // platform endpoints (168.63.129.16 is otherwise a public address)
  ['169.254.169.254', 'cloud-metadata'],
  ['169.254.170.2', 'cloud-metadata'],
  ['169.254.170.23', 'cloud-metadata'],
  ['168.63.129.16', 'cloud-metadata'],
  ['168.63.129.17', 'public'],
  ['100.100.100.200', 'cloud-metadata'],
  ['192.0.0.192', 'cloud-metadata'],
  ['fd00:ec2::254', 'cloud-metadata'],
  ['fd00:ec2::23', 'cloud-metadata'],
  ['fd00:ec2::255', 'unique-local'],
  // IPv6 registry
  ['::', 'unspecified'],
  ['::1', 'loopback'],
  ['::2', 'this-network'],
  ['100::', 'discard-only'],
  ['100::ffff:ffff:ffff:ffff', 'discard-only'],
  ['100:0:0:1::', 'reserved'],
  ['2001::', 'broadcast'],
  ['2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff', 'ietf-protocol-assignments'],
  ['2001:200::', 'public'],
  ['2001:1::1', 'ietf-protocol-assignments'],
  ['2001:1::2', 'ietf-protocol-assignments'],
  ['2001:1::3', 'ietf-protocol-assignments'],
  ['2001:2::', 'benchmarking'],
  ['2001:2:0:ffff:ffff:ffff:ffff:ffff', 'benchmarking'],
  ['2001:3::1', 'public'],
  ['2001:4:112::1', 'public'],
  ['2001:10::1', 'orchid'],
  ['2001:20::', 'orchid'],
  ['2001:2f:ffff:ffff:ffff:ffff:ffff:ffff', 'orchid'],
  ['2001:30::1', 'orchid'],
  ['2001:db7:ffff:ffff:ffff:ffff:ffff:ffff', 'public'],
  ['2001:db8::', 'documentation'],
  ['2001:db8:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
  ['2001:db9::', 'public'],
  ['2620:4f:8000::1', 'public'],
  ['3fff::', 'documentation'],
  ['3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff', 'documentation'],
  ['3fff:1000::', 'public'],
  ['5f00::1', 'reserved'],
  ['1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['2000::', 'public'],
  ['2606:4700:4700::1111', 'public'],
  ['3fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'public'],
  ['4000::', 'reserved'],
  ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  ['fc00::', 'unique-local'],
  ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'unique-local'],
  ['fe00::', 'reserved'],
  ['fe80::', 'link-local'],
  ['febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'link-local'],
  ['fec0::', 'site-local'],
  ['feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'site-local'],
  ['ff00::', 'multicast'],
  ['ff02::1', 'multicast'],
  ['ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'multicast'],
  // IPv4-mapped ::ffff:0:0/96: the IPv4 address decides
  ['::ffff:127.0.0.1', 'loopback'],
  ['::ffff:7f00:1', 'loopback'],
  ['::ffff:10.1.2.3', 'private'],
  ['::ffff:169.254.169.254', 'cloud-metadata'],
  ['::ffff:168.63.129.16', 'cloud-metadata'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:8.8.8.8', 'public'],
  // IPv4-compatible ::/96 (deprecated): never public
  ['::127.0.0.1', 'loopback'],
  ['::10.0.0.1', 'private'],
  ['::8.8.8.8', 'reserved'],
  // NAT64 well-known prefix 64:ff9b::/96
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::a9fe:a9fe', 'cloud-metadata'],
  ['64:ff9b::192.168.1.1', 'private'],
  ['64:ff9b::8.8.8.8', 'public'],
  ['64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff', 'reserved'],
  // NAT64 local-use 64:ff9b:1::/48 (RFC 6052 /48 layout and /96 layout both decoded)
  ['64:ff9b:1:7f00:1::', 'loopback'],
  ['64:ff9b:1:a00:1::', 'private'],
  ['64:ff9b:1::7f00:1', 'loopback'],
  ['64:ff9b:1:808:8:800::', 'private'],
  ['64:ff9b:1:a00:0:100::', 'private'],
  ['64:ff9b:1:ffff:ffff:ffff:ffff:ffff', 'broadcast'],
  // 6to4 2002::/16
  ['2002:7f00:1::', 'loopback'],
  ['2002:a9fe:a9fe::1', 'cloud-metadata'],
  ['2002:c0a8:101::1', 'private'],
  ['2002:808:808::1', 'public'],
  ['2002::', 'unspecified'],
  // Teredo 2001::/32: obfuscated client (bits inverted) and server
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', 'documentation'],
  ['2001:0:4136:e378:8000:63bf:80ff:fffe', 'loopback'],
  ['2001:0:4136:e378:8000:63bf:f7f7:f7f7', 'ietf-protocol-assignments'],
  ['2001:0:a00:1:8000:63bf:f7f7:f7f7', 'private'],
];

test('the classification table has at least 120 addresses', () => {
  assert.ok(TABLE.length >= 120, `only ${TABLE.length} rows`);
});

test('every address in the table is classified as the registries say (0 misclassifications)', () => {
  const wrong = TABLE.flatMap(([ip, want]) => {
    const got = classifyAddress(ip)?.class;
    return got === want ? [] : [`${ip}: expected ${want}, got ${got}`];
  });
  assert.deepEqual(wrong, []);
});

test('an IPv4 address embedded in IPv6 is reported with how it was embedded', () => {
  const rows: Array<[string, string, string]> = [
    ['::ffff:127.0.0.1', '127.0.0.1', 'ipv4-mapped'],
    ['::127.0.0.1', '127.0.0.1', 'ipv4-compatible'],
    ['64:ff9b::7f00:1', '127.0.0.1', 'nat64'],
    ['64:ff9b:1:7f00:0:100::', '127.0.0.1', 'nat64-local'],
    ['64:ff9b:1::7f00:1', '127.0.0.1', 'nat64-local'],
    ['2002:7f00:1::', '127.0.0.1', '6to4'],
    ['2001:0:4136:e378:8000:63bf:80ff:fffe', '127.0.0.1', 'teredo'],
    ['2001:0:7f00:1:8000:63bf:f7f7:f7f7', '127.0.0.1', 'teredo-server'],
  ];
  for (const [ip, inner, via] of rows)
    assert.deepEqual(classifyAddress(ip)?.embedded, { ip: inner, via }, ip);
});

test('addresses come back in canonical text', () => {
  assert.equal(classifyAddress('2001:DB8:0:0:0:0:0:1')?.ip, '2001:db8::1');
  assert.equal(classifyAddress('::FFFF:127.0.0.1')?.ip, '::ffff:7f00:1');
});

test('strings that are not dotted-quad or IPv6 addresses are not classified', () => {
  for (const s of [
    '',
    'x',
    '127.1',
    '0x7f.0.0.1',
    '0177.0.0.1',
    '2130706433',
    '127.0.0.01',
    '256.0.0.1',
    '1.2.3',
    'fe80::1%eth0',
    '::ffff:0x7f.1',
    ':::',
    '1.2.3.4 ',
    'a'.repeat(1000),
  ])
    assert.equal(classifyAddress(s), undefined, JSON.stringify(s.slice(0, 20)));
});

const LISTENERS = [
  { host: '127.0.0.1', port: 3128 },
  { host: '::1', port: 3129 },
  { host: '0.0.0.0', port: 8290 },
  { host: '[::]', port: 9464 },
  { host: '10.0.0.4', port: 8443 },
];

test("an address equal to one of Membrane's own listeners (on its port) is self, on each listener", () => {
  const rows: Array<[string, number, AddressClass]> = [
    ['127.0.0.1', 3128, 'self'],
    ['::ffff:127.0.0.1', 3128, 'self'],
    ['127.0.0.1', 3129, 'loopback'],
    ['::1', 3129, 'self'],
    ['::1', 3128, 'loopback'],
    ['127.0.0.1', 8290, 'self'],
    ['127.0.0.2', 8290, 'self'],
    ['0.0.0.0', 8290, 'self'],
    ['::1', 8290, 'self'],
    ['::1', 9464, 'self'],
    ['127.0.0.1', 9464, 'self'],
    ['10.0.0.4', 8443, 'self'],
    ['10.0.0.4', 443, 'private'],
    ['8.8.8.8', 8290, 'public'],
  ];
  for (const [ip, port, want] of rows)
    assert.equal(classifyAddress(ip, port, LISTENERS)?.class, want, `${ip}:${port}`);
});

test('address patterns parse IP, IP:port, [IPv6]:port and CIDR, and refuse the rest with a reason', () => {
  const ok = ['10.1.2.3', '10.1.2.3:8443', 'fd00::1', '[fd00::1]:443', '10.0.0.0/8', 'fd00::/8', '0.0.0.0/0'];
  for (const s of ok) assert.equal(typeof parseAddressPattern(s), 'object', s);
  const bad: Array<[string, RegExp]> = [
    ['10.1.2.3/8', /network address/],
    ['10.0.0.0/33', /prefix length/],
    ['10.1.2.3:0', /port/],
    ['10.1.2.3:70000', /port/],
    ['[10.1.2.3]:80', /IPv6/],
    ['10.0.0.0/8:443', /CIDR|IP/],
    ['example.com', /IP address/],
    ['', /IP address/],
  ];
  for (const [s, re] of bad) {
    const r = parseAddressPattern(s);
    assert.equal(typeof r, 'string', s);
    assert.match(r as string, re, s);
  }
});

const policy = compileEgressPolicy(
  parseEgressPolicy(`
mode: open
allow:
  - host: "*"
deny:
  - host: 10.9.0.0/16
  - host: 192.168.7.7
    ports: [8443]
  - host: 10.8.0.0/16
    action: report
allowAddresses:
  - 10.1.2.3
  - 10.9.1.1
  - 192.168.7.0/24
  - "[fd00::1]:8443"
  - 169.254.0.0/16
  - 168.63.129.16
  - 10.8.0.0/16
`),
);

test('only public addresses are dialable by default; allowAddresses makes named exceptions; a user deny beats them', () => {
  const rows: Array<[string, number, boolean, string]> = [
    ['8.8.8.8', 443, true, 'address:public'],
    ['2606:4700::1', 443, true, 'address:public'],
    ['127.0.0.1', 80, false, 'address:loopback'],
    ['10.1.2.4', 443, false, 'address:private'],
    ['10.1.2.3', 443, true, 'allowAddresses[0]'],
    ['::ffff:10.1.2.3', 443, true, 'allowAddresses[0]'],
    ['10.9.1.1', 443, false, 'deny[0]'],
    ['::ffff:10.9.1.1', 443, false, 'deny[0]'],
    ['64:ff9b::a09:101', 443, false, 'deny[0]'],
    ['192.168.7.7', 8443, false, 'deny[1]'],
    ['192.168.7.7', 443, true, 'allowAddresses[2]'],
    ['fd00::1', 8443, true, 'allowAddresses[3]'],
    ['fd00::1', 443, false, 'address:unique-local'],
    // a range never opens a metadata endpoint; an entry naming it does
    ['169.254.1.1', 80, true, 'allowAddresses[4]'],
    ['169.254.169.254', 80, false, 'address:cloud-metadata'],
    ['168.63.129.16', 80, true, 'allowAddresses[5]'],
    // a report-only deny does not refuse
    ['10.8.0.1', 443, true, 'allowAddresses[6]'],
    // an exception names an address, not the ones that embed it
    ['2002:a01:203::1', 443, false, 'address:private'],
  ];
  for (const [ip, port, allowed, rule] of rows) {
    const d = decideAddress(policy, ip, port);
    assert.equal(d.allowed, allowed, `${ip}:${port} ${d.reason}`);
    assert.equal(d.rule, rule, `${ip}:${port}`);
  }
});

test('self is never dialable, not even through allowAddresses', () => {
  const p = compileEgressPolicy(
    parseEgressPolicy('mode: open\nallowAddresses: ["127.0.0.1", "127.0.0.0/8"]\n'),
  );
  const d = decideAddress(p, '127.0.0.1', 3128, LISTENERS);
  assert.deepEqual([d.allowed, d.class, d.rule], [false, 'self', 'address:self']);
  assert.equal(decideAddress(p, '127.0.0.1', 80, LISTENERS).allowed, true);
});

test('hostile input to decideAddress is denied with a reason, never thrown', () => {
  for (const s of [
    '',
    'localhost',
    '127.1',
    '999.1.1.1',
    'fe80::1%lo',
    '\u0000',
    'x'.repeat(100_000),
    null,
    42,
  ] as unknown[]) {
    const d = decideAddress(policy, s as string, 80);
    assert.equal(d.allowed, false);
    assert.ok(d.reason.length > 0);
    assert.ok(d.ip.length <= 64);
  }
});
