import assert from 'node:assert/strict';
import { test } from 'node:test';
import { escapeXml, renderChart } from '../../bench/chart.js';
import { formatSize, median } from '../../bench/measure.js';
import { parseOpensslSpeed } from '../../bench/openssl.js';
import { formatTable } from '../../bench/report.js';
import type { BenchCase, BenchReport } from '../../bench/types.js';

const SPEED_3_0 = `version: 3.0.19
built on: Fri Apr  3 12:29:32 2026 UTC
options: bn(64,64)
CPUINFO: OPENSSL_ia32cap=0xfffa32034f8bffff:0x415f46f1bf2ffb
The 'numbers' are in 1000s of bytes per second processed.
type             16 bytes     64 bytes    256 bytes   1024 bytes   8192 bytes  16384 bytes
AES-256-GCM      34912.85k   141146.70k   510937.21k  1555944.45k  3898253.31k  4382621.70k
`;

test('openssl speed: every column parsed, in bytes per second', () => {
  const blocks = parseOpensslSpeed(SPEED_3_0);
  assert.deepEqual(
    blocks.map((b) => b.bytes),
    [16, 64, 256, 1024, 8192, 16384],
  );
  assert.equal(blocks[5]!.bytesPerSecond, 4382621.7 * 1000);
  assert.equal(blocks[0]!.bytesPerSecond, 34912.85 * 1000);
});

test('openssl speed: small values without the k suffix are still thousands', () => {
  const out = 'type   16 bytes  64 bytes\naes-256-gcm   9999.50   12000.00k\n';
  assert.deepEqual(
    parseOpensslSpeed(out).map((b) => b.bytesPerSecond),
    [9999.5 * 1000, 12000 * 1000],
  );
});

const badOutputs: [string, string, RegExp][] = [
  ['no header', 'AES-256-GCM 1.00k\n', /type/],
  ['no row', 'type 16 bytes\nAES-128-GCM 1.00k\n', /no AES-256-GCM row/],
  ['value not a number', 'type 16 bytes\nAES-256-GCM 1.00x\n', /not a number/],
  ['column count mismatch', 'type 16 bytes 64 bytes\nAES-256-GCM 1.00k\n', /2 block sizes but 1 values/],
];
for (const [name, text, err] of badOutputs) {
  test(`openssl speed: rejects output with ${name}`, () => {
    assert.throws(() => parseOpensslSpeed(text), err);
  });
}

test('median of odd and even counts, unsorted input', () => {
  assert.equal(median([5, 1, 3]), 3);
  assert.equal(median([4, 1, 3, 2]), 2.5);
  assert.throws(() => median([]));
});

test('sizes are labelled in binary units', () => {
  assert.deepEqual([4096, 65536, 1048576, 4 * 1048576, 1000].map(formatSize), [
    '4 KiB',
    '64 KiB',
    '1 MiB',
    '4 MiB',
    '1000 B',
  ]);
});

const c = (over: Partial<BenchCase>): BenchCase => ({
  suite: 'aead',
  impl: 'membrane-core',
  op: 'decrypt',
  frameBytes: 65536,
  threads: 1,
  bytesPerSecond: 3_000_000_000,
  ...over,
});

test('table: ratio columns appear only when a case has them', () => {
  const plain = formatTable([c({})]);
  assert.doesNotMatch(plain, /x openssl|x SDK/);
  const rich = formatTable([c({ ratioToOpenssl: 0.7, ratioToSdk: 12.34 })]);
  assert.match(rich, /x openssl/);
  assert.match(rich, /0\.70/);
  assert.match(rich, /12\.3/);
  assert.match(rich, /64 KiB\s+1\s+3000/);
});

test('chart: labels are escaped and the reference line drawn', () => {
  const report: BenchReport = {
    suite: 'aead',
    quick: true,
    startedAt: '2026-01-01T00:00:00Z',
    durationSeconds: 1,
    machine: {
      cpus: 2,
      model: 'CPU <&>',
      node: 'v20',
      openssl: null,
      nodeOpenssl: '3',
      platform: 'linux',
      arch: 'x64',
      loadAverage: [0, 0, 0],
    },
    cases: [c({ impl: '<script>' })],
    targets: [],
    notes: [],
  };
  const svg = renderChart(report, { label: 'openssl', bytesPerSecond: 4e9 });
  assert.doesNotMatch(svg, /<script>|CPU <&>/);
  assert.match(svg, /&#60;script&#62;/);
  assert.match(svg, /stroke-dasharray/);
  assert.equal(escapeXml(`a"b'c`), 'a&#34;b&#39;c');
});
