import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { InspectSettings, PiiKind } from '../../../policy/egress/types.js';
import { isMembraneError } from '../../../policy/errors.js';
import { createInspector, type Finding, scanBody } from '../../../policy/inspect/index.js';

const ALL: readonly PiiKind[] = ['card', 'iban', 'us-ssn', 'email', 'ip'];
const block: InspectSettings = { pii: ALL, action: 'block' };
const report: InspectSettings = { pii: ALL, action: 'report' };
const FORM = 'application/x-www-form-urlencoded';

/** Bodies that must be blocked: [what, body, kind, rule, raw offset of the match, content type?]. */
const found: ReadonlyArray<readonly [string, string, PiiKind, string, number, string?]> = [
  ['a Visa number in compact form', 'card=4111111111111111&x=1', 'card', 'pii.card', 5],
  ['a Visa number grouped by spaces', 'pay with 4111 1111 1111 1111 today', 'card', 'pii.card', 9],
  ['a Mastercard grouped by dashes', '{"pan":"5555-5555-5555-4444"}', 'card', 'pii.card', 8],
  ['a Mastercard 2-series number', 'n 2223003122003222', 'card', 'pii.card', 2],
  ['an Amex number in 4-6-5 groups', 'amex 3782 822463 10005.', 'card', 'pii.card', 5],
  ['a Discover number at the end of the body', 'x,6011111111111117', 'card', 'pii.card', 2],
  ['a 19-digit Visa number', 'v 4111111111111111110', 'card', 'pii.card', 2],
  ['a card number among other numbers', 'ref 12 4111 1111 1111 1111 2024', 'card', 'pii.card', 7],
  ['a card number in a URL path', '"u":"/cards/4111111111111111"', 'card', 'pii.card', 12],
  ['a card number in a CSV row', 'alice,4111111111111111,EUR', 'card', 'pii.card', 6],
  [
    'a card number with JSON-escaped spaces',
    '"4111\\u00201111\\u00201111\\u00201111"',
    'card',
    'pii.card',
    1,
  ],
  ['a card number percent-encoded', 'c=%34111111111111111', 'card', 'pii.card', 2],
  ['a card number in a form body with + as space', 'c=4111+1111+1111+1111', 'card', 'pii.card', 2, FORM],
  ['a German IBAN, compact', 'iban=DE89370400440532013000;', 'iban', 'pii.iban', 5],
  ['a German IBAN grouped by four', 'to DE89 3704 0044 0532 0130 00 please', 'iban', 'pii.iban', 3],
  ['a British IBAN with letters in the BBAN', '"GB82WEST12345698765432"', 'iban', 'pii.iban', 1],
  ['a French IBAN in lower case', 'fr1420041010050500013m02606', 'iban', 'pii.iban', 0],
  ['a Norwegian IBAN (the shortest, 15)', 'NO9386011117947 ', 'iban', 'pii.iban', 0],
  ['a Maltese IBAN (31)', 'MT84MALT011000012345MTLCAST001S', 'iban', 'pii.iban', 0],
  ['an SSN with dashes', 'ssn 123-45-6789', 'us-ssn', 'pii.us-ssn', 4],
  ['an SSN with dashes and no keyword', 'id: 078-05-1121,', 'us-ssn', 'pii.us-ssn', 4],
  ['an SSN with spaces after a keyword', 'SSN 123 45 6789', 'us-ssn', 'pii.us-ssn', 4],
  ['a 9-digit SSN after a JSON key', '{"ssn": "123456789"}', 'us-ssn', 'pii.us-ssn.keyword', 9],
  [
    'a 9-digit SSN after a camelCase key',
    'socialSecurityNumber=123456789',
    'us-ssn',
    'pii.us-ssn.keyword',
    21,
  ],
  ['a 9-digit SSN after "social security"', 'Social Security: 219099998', 'us-ssn', 'pii.us-ssn.keyword', 17],
  ['an e-mail address', 'write to john.doe+x@example.co.uk.', 'email', 'pii.email', 9],
  ['an e-mail address with an IDNA TLD', '"a_b@mail.xn--p1ai"', 'email', 'pii.email', 1],
  ['an e-mail address percent-encoded', 'to=jane%40example.org', 'email', 'pii.email', 3],
  ['an IPv4 address', 'peer 192.168.1.20 up', 'ip', 'pii.ipv4', 5],
  ['an IPv4 address with a port in a URL', 'http://10.0.0.1:8080/', 'ip', 'pii.ipv4', 7],
  ['an IPv4 address after a key and colon', 'host:172.16.5.4', 'ip', 'pii.ipv4', 5],
  ['an IPv6 address in brackets', '[2001:db8::1]:443', 'ip', 'pii.ipv6', 1],
  ['a full IPv6 address', 'fe80:0:0:0:202:b3ff:fe1e:8329', 'ip', 'pii.ipv6', 0],
  ['an IPv4-mapped IPv6 address', 'src ::ffff:192.0.2.128.', 'ip', 'pii.ipv6', 4],
];

/** Bodies that must pass: look-alikes that fail validation, and ordinary data. */
const clean: ReadonlyArray<readonly [string, string, string?]> = [
  ['a Luhn-invalid 16-digit number', 'card 4111111111111112'],
  ['a Luhn-valid number with no card-network prefix', 'id 1234567812345670'],
  ['an order id of 20 digits', 'order 41111111111111111113'],
  ['an order id glued to letters', 'ORD4111111111111111'],
  ['a decimal fraction', '{"ratio":0.4111111111111111}'],
  ['a card-shaped number in irregular groups', '41 1111 1111 1111 11'],
  ['an IBAN with a bad checksum', 'DE89370400440532013001'],
  ['an IBAN one character short', 'DE8937040044053201300 '],
  ['an IBAN with check digits 00', 'GB00WEST12345698765432'],
  ['a word that starts like an IBAN', 'DE89ERS and GB82 ok'],
  ['an SSN with area 000', 'ssn 000-12-3456'],
  ['an SSN with area 666', 'ssn 666-12-3456'],
  ['an SSN with an area in the 900s', 'ssn 912-12-3456'],
  ['an SSN with group 00', 'ssn 123-00-4567'],
  ['an SSN with serial 0000', 'ssn 123-45-0000'],
  ['the Woolworth sample SSN', 'ssn 078-05-1120'],
  ['an SSN-shaped order id', 'ORD-123-45-6789'],
  ['an SSN-shaped part of a longer id', '1-123-45-6789'],
  ['9 digits with no SSN keyword', 'count 123456789'],
  ['9 digits far from an SSN keyword', 'ssn field is below, after a long explanation: 123456789'],
  ['space-separated 3-2-4 digits with no keyword', 'x 123 45 6789'],
  ['ISO dates', '2024-01-15 and 2024/01/15 and 15.01.2024'],
  ['phone numbers', '+1 415-555-0132, +44 20 7946 0958, (212) 555-0100'],
  ['timestamps and times', '2024-06-01T10:20:30.123Z 12:30:45'],
  ['a version string', 'v1.2.3.4 and version 10.0.1'],
  ['an invalid IPv4 address', '256.1.1.1 and 1.2.3.4.5 and 01.2.3.4'],
  ['a MAC address', '00:1a:2b:3c:4d:5e'],
  ['C++ and slicing syntax', 'std::vector a[::2] Foo::Bar'],
  ['an @ without a domain', 'user@localhost and @scope/pkg and a@b'],
  ['a hex digest', 'sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'],
  ['a percent sign that is not an escape', '100% of 4111-1111 rows, %zz, %4'],
  ['a backslash that is not an escape', 'C:\\x\\u12'],
];

/** Feeds body in two chunks split at `at`; returns the finding and the releasable offset seen between. */
function splitScan(settings: InspectSettings, body: Buffer, at: number, ct?: string) {
  const ins = createInspector(settings, ct);
  const f1 = ins.push(body.subarray(0, at));
  const released = ins.releasable;
  const f2 = f1 ?? ins.push(body.subarray(at));
  const f3 = f2 ?? ins.end();
  return { finding: f1 ?? f2 ?? f3, first: f1, released };
}

describe('open-mode PII inspector', () => {
  for (const [what, body, kind, rule, offset, ct] of found) {
    test(`blocks ${what}, split across two chunks at every offset`, () => {
      const buf = Buffer.from(body);
      for (let at = 0; at <= buf.length; at++) {
        const { finding, first, released } = splitScan(block, buf, at, ct);
        assert.deepEqual(
          finding,
          { kind, offset, rule, action: 'block' } satisfies Finding,
          `split at ${at} of ${JSON.stringify(body)}`,
        );
        // Hold-back: before the match is confirmed, no byte of it may have been released.
        if (!first) assert.ok(released <= offset, `released ${released} > ${offset} at split ${at}`);
      }
    });
  }

  test('finds every positive case fed one byte at a time', () => {
    for (const [what, body, kind, , offset, ct] of found) {
      const ins = createInspector(block, ct);
      let f: Finding | undefined;
      for (const b of Buffer.from(body)) f ??= ins.push(Buffer.of(b));
      f ??= ins.end();
      assert.equal(f?.kind, kind, what);
      assert.equal(f?.offset, offset, what);
    }
  });

  for (const [what, body, ct] of clean) {
    test(`passes ${what}, whole and split at every offset`, () => {
      const buf = Buffer.from(body);
      for (let at = 0; at <= buf.length; at++) {
        const { finding } = splitScan(block, buf, at, ct);
        assert.equal(finding, undefined, `split at ${at}: ${JSON.stringify(finding)}`);
      }
    });
  }

  test('reports only the kinds the rule lists', () => {
    const body = [Buffer.from('4111111111111111 john@example.com 10.0.0.1')];
    assert.deepEqual(
      scanBody({ pii: ['email'], action: 'report' }, body).map((f) => f.kind),
      ['email'],
    );
    assert.deepEqual(scanBody({ pii: [], action: 'block' }, body), []);
  });

  test('report action returns every finding in body order and lets the body continue', () => {
    const ins = createInspector(report);
    const first = ins.push(Buffer.from('a 4111111111111111 b 10.0.0.1 c '));
    assert.deepEqual(first, { kind: 'card', offset: 2, rule: 'pii.card', action: 'report' });
    assert.equal(ins.push(Buffer.from('DE89370400440532013000 end 10.0.0.2'))?.kind, 'iban');
    assert.equal(ins.end()?.kind, 'ip'); // the address at the very end is only settled by end()
    assert.deepEqual(
      ins.findings.map((f) => [f.kind, f.offset]),
      [
        ['card', 2],
        ['ip', 21],
        ['iban', 32],
        ['ip', 59],
      ],
    );
    assert.equal(ins.count, 4);
    assert.equal(ins.releasable, 67);
  });

  test('block action is sticky: after a finding nothing more is released and every call repeats it', () => {
    const ins = createInspector(block);
    const f = ins.push(Buffer.from('x 4111111111111111 y'));
    assert.equal(f?.kind, 'card');
    assert.equal(ins.releasable, 0);
    assert.deepEqual(ins.push(Buffer.from('more')), f);
    assert.deepEqual(ins.end(), f);
  });

  test('hold-back stays bounded on long runs of digits, words and hex', () => {
    for (const body of [
      '1'.repeat(100_000),
      'a'.repeat(100_000),
      '1 '.repeat(50_000),
      'ab12:'.repeat(20_000),
    ]) {
      const ins = createInspector(block);
      assert.equal(ins.push(Buffer.from(body)), undefined);
      assert.ok(ins.consumed - ins.releasable <= 400, `held ${ins.consumed - ins.releasable} bytes`);
    }
  });

  test('rejects unknown PII kinds and actions with a typed error', () => {
    assert.throws(
      () => createInspector({ pii: ['passport' as PiiKind], action: 'block' }),
      (e) => isMembraneError(e, 'INSPECT_SETTINGS'),
    );
    assert.throws(
      () => createInspector({ pii: ['card'], action: 'drop' as 'block' }),
      (e) => isMembraneError(e, 'INSPECT_SETTINGS'),
    );
  });

  test('refuses push after end', () => {
    const ins = createInspector(report);
    ins.end();
    assert.throws(
      () => ins.push(Buffer.from('x')),
      (e) => isMembraneError(e, 'INSPECT_USAGE'),
    );
  });
});

/**
 * The SSN keyword context, checked by looking back from the number over the decoded bytes (kept
 * across chunks): [what, body, the finding's rule or undefined when the body must pass, raw offset].
 */
const ssnContext: ReadonlyArray<readonly [string, string, string | undefined, number?]> = [
  ['a keyword ending 32 bytes before the number', `ssn${' '.repeat(32)}123456789`, 'pii.us-ssn.keyword', 35],
  ['a keyword ending 33 bytes before the number', `ssn${' '.repeat(33)}123456789`, undefined],
  ['spaced groups 32 bytes after a keyword', `SSN${' '.repeat(32)}123 45 6789`, 'pii.us-ssn', 35],
  ['spaced groups 33 bytes after a keyword', `SSN${' '.repeat(33)}123 45 6789`, undefined],
  ['the plural keyword', 'SSNs: 123456789', 'pii.us-ssn.keyword', 6],
  ['a camelCase keyword', 'mySsn=123456789', 'pii.us-ssn.keyword', 6],
  ['a snake_case "social_security"', 'social_security 123456789', 'pii.us-ssn.keyword', 16],
  [
    'an upper-case "SOCIAL SECURITY" and a word between',
    'SOCIAL SECURITY no. 123456789',
    'pii.us-ssn.keyword',
    20,
  ],
  ['a percent-encoded keyword', 'ss%6E=123456789', 'pii.us-ssn.keyword', 6],
  [
    'a JSON-escaped keyword in a long escape run',
    '"\\u0073\\u0073\\u006e":"123456789"',
    'pii.us-ssn.keyword',
    22,
  ],
  ['a keyword inside a longer word', 'xssn 123456789', undefined],
  ['a keyword followed by more letters', 'ssnx 123456789', undefined],
  ['a word that only starts like the keyword', 'SSNumber 123456789', undefined],
  ['"social security" written as one word', 'socialsecurity 123456789', undefined],
  ['"social" and "security" two spaces apart', 'social  security 123456789', undefined],
  ['"security" alone', 'security 123456789', undefined],
  ['a keyword glued to the number', 'ssn123456789', undefined],
];

describe('SSN keyword context', () => {
  for (const [what, body, rule, offset] of ssnContext) {
    test(`${rule ? 'finds' : 'passes'} ${what}, whole, split at every offset and byte by byte`, () => {
      const buf = Buffer.from(body);
      const want = rule ? { kind: 'us-ssn', offset, rule, action: 'block' } : undefined;
      for (let at = 0; at <= buf.length; at++)
        assert.deepEqual(splitScan(block, buf, at).finding, want, `split at ${at}`);
      const ins = createInspector(block);
      let f: Finding | undefined;
      for (const b of buf) f ??= ins.push(Buffer.of(b));
      f ??= ins.end();
      assert.deepEqual(f, want, 'byte by byte');
    });
  }
});
