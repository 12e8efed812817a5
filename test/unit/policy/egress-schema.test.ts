import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { compileEgressPolicy } from '../../../policy/egress/rules.js';
import {
  egressIssuesOf,
  LIMIT_DEFAULTS,
  parseEgressPolicy,
  validateEgressPolicy,
} from '../../../policy/egress/schema.js';
import { isMembraneError } from '../../../policy/errors.js';
import { parseSpec, resolveSpecPaths, validateSpec } from '../../../policy/spec.js';

test('a minimal policy gets every default: no rules, default limits', () => {
  const p = parseEgressPolicy('mode: open\n');
  assert.deepEqual(p, { mode: 'open', allow: [], deny: [], allowAddresses: [], limits: LIMIT_DEFAULTS });
});

const INVALID: Array<[string, string, Array<[string, RegExp]>]> = [
  ['mode is required', 'allow: []\n', [['mode', /secure.*trusted.*open.*required/]]],
  ['a misspelt mode gets a suggestion', 'mode: opn\n', [['mode', /did you mean "open"/]]],
  [
    'unknown fields are errors, with the allowed ones listed',
    'mode: open\nallow: [{host: a.example, port: [443]}]\n',
    [['allow[0].port', /unknown field \(did you mean "ports"\?\); expected one of: host, ports/]],
  ],
  ['a rule needs a host', 'mode: open\nallow: [{ports: [443]}]\n', [['allow[0].host', /required/]]],
  [
    'a wildcard only as the whole host or first label',
    'mode: open\nallow: [{host: "a.*.example"}]\n',
    [['allow[0].host', /"\*\.suffix"/]],
  ],
  ['a malformed host name', 'mode: open\ndeny: [{host: "a..b"}]\n', [['deny[0].host', /empty label/]]],
  [
    'a CIDR with host bits set',
    'mode: open\ndeny: [{host: 10.1.0.0/8}]\n',
    [['deny[0].host', /network address/]],
  ],
  [
    'ports are 1-65535 or low-high',
    'mode: open\nallow: [{host: a.example, ports: [0, "90-80", "x"]}]\n',
    [
      ['allow[0].ports[0]', /./],
      ['allow[0].ports[1]', /./],
      ['allow[0].ports[2]', /./],
    ],
  ],
  [
    'methods are HTTP tokens',
    'mode: open\nallow: [{host: a.example, methods: ["G T"]}]\n',
    [['allow[0].methods[0]', /HTTP method/]],
  ],
  [
    'paths start with "/"',
    'mode: open\nallow: [{host: a.example, paths: ["api/*"]}]\n',
    [['allow[0].paths[0]', /starting with "\/"/]],
  ],
  [
    'pins are base64 SHA-256',
    'mode: trusted\nallow: [{host: a.example, tls: {pins: [abc]}}]\n',
    [['allow[0].tls.pins[0]', /base64 SHA-256/]],
  ],
  [
    'deny rules have no mode',
    'mode: open\ndeny: [{host: a.example, mode: open}]\n',
    [['deny[0].mode', /unknown field/]],
  ],
  [
    'allow actions are allow or report',
    'mode: open\nallow: [{host: a.example, action: deny}]\n',
    [['allow[0].action', /"allow" \| "report"/]],
  ],
  [
    'inspection only in open mode',
    'mode: trusted\nallow: [{host: a.example, inspect: {pii: [card]}}]\n',
    [['allow[0].inspect', /mode "open"/]],
  ],
  [
    'an empty inspect section is refused',
    'mode: open\nallow: [{host: a.example, inspect: {}}]\n',
    [['allow[0].inspect.pii', /at least one PII detector/]],
  ],
  [
    'unknown PII detectors',
    'mode: open\nallow: [{host: a.example, inspect: {pii: [ssn]}}]\n',
    [['allow[0].inspect.pii[0]', /"us-ssn"/]],
  ],
  [
    'a DEK only in secure mode',
    'mode: open\nallow: [{host: a.example, dek: k}]\n',
    [['allow[0].dek', /mode "secure"/]],
  ],
  [
    'allowAddresses entries are IP, IP:port or CIDR',
    'mode: open\nallowAddresses: [example.com, "10.0.0.1:0"]\n',
    [
      ['allowAddresses[0]', /IP address/],
      ['allowAddresses[1]', /port/],
    ],
  ],
  [
    'limits are positive integers, body and headers within the request',
    'mode: open\nlimits: {maxBodyBytes: 100, maxRequestBytes: 10, idleTimeoutMs: -1}\n',
    [
      ['limits.maxBodyBytes', /at most maxRequestBytes \(10\), got 100/],
      ['limits.maxHeaderBytes', /got 16384/],
      ['limits.idleTimeoutMs', /number >= 1/],
    ],
  ],
  ['YAML errors carry their line', 'mode: open\nallow: [\n', [['(document)', /valid YAML/]]],
];

for (const [name, text, want] of INVALID) {
  test(`an invalid policy is refused naming the field: ${name}`, () => {
    const v = validateEgressPolicy(text);
    assert.equal(v.ok, false);
    for (const [path, re] of want) {
      const hit = v.issues.find((i) => i.path === path);
      assert.ok(hit, `no issue at ${path}: ${JSON.stringify(v.issues)}`);
      assert.match(hit.message, re);
    }
  });
}

test('parseEgressPolicy throws EGRESS_POLICY_INVALID listing every issue with its path and line', () => {
  try {
    parseEgressPolicy('mode: open\nallow:\n  - host: a..b\n    ports: [0]\n', 'egress.yaml');
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(isMembraneError(e, 'EGRESS_POLICY_INVALID'));
    assert.match(e.message, /egress policy egress\.yaml is invalid \(2 issues\)/);
    assert.match(e.message, /allow\[0\]\.host: .* \[line 3\]/);
    assert.equal(egressIssuesOf(e)?.length, 2);
  }
});

test('compiling names a referenced file that was not loaded or is not what it should be', () => {
  const p = parseEgressPolicy(
    'mode: open\nallow:\n  - {host: a.example, tls: {ca: ca.pem}}\n  - {host: b.example, inspect: {schema: s.json}}\n',
  );
  try {
    compileEgressPolicy(p, { 's.json': '[1]' });
    assert.fail('expected an error');
  } catch (e) {
    assert.ok(isMembraneError(e, 'EGRESS_POLICY_INVALID'));
    assert.deepEqual(
      egressIssuesOf(e)?.map((i) => i.path),
      ['allow[0].tls.ca', 'allow[1].inspect.schema'],
    );
  }
});

const SPEC = (outbound: string) => `
version: "1"
attestation: {provider: sev-snp}
keys:
  deks: [{name: out, source: {kind: file, path: out.key}}]
network:
  http:
    outbound:
${outbound
  .trim()
  .split('\n')
  .map((l) => `      ${l}`)
  .join('\n')}
`;

test('the spec section network.http.outbound is the egress policy; its files resolve against the spec', () => {
  const spec = parseSpec(
    SPEC(`
mode: secure
allow:
  - {host: vault.example, dek: out}
  - {host: api.example, mode: trusted, tls: {ca: certs/ca.pem}}
  - {host: files.example, mode: open, inspect: {pii: [card], schema: /etc/s.json}}
`),
  );
  const out = spec.network?.http?.outbound;
  assert.equal(out?.allow[0]?.dek, 'out');
  assert.deepEqual(out?.limits, LIMIT_DEFAULTS);
  const r = resolveSpecPaths(spec, '/specs').network?.http?.outbound;
  assert.equal(r?.allow[1]?.tls?.ca, '/specs/certs/ca.pem');
  assert.equal(r?.allow[2]?.inspect?.schema, '/etc/s.json');
});

test('in the spec a secure rule must name a DEK declared in keys.deks', () => {
  const v = validateSpec(SPEC('mode: secure\nallow: [{host: a.example}, {host: b.example, dek: nope}]\n'));
  assert.equal(v.ok, false);
  const by = new Map(v.issues.map((i) => [i.path, i.message]));
  assert.match(by.get('network.http.outbound.allow[0].dek') ?? '', /DEK declared in keys\.deks/);
  assert.match(by.get('network.http.outbound.allow[1].dek') ?? '', /declared: out/);
});

test('unknown fields in the network section are named like the rest of the spec', () => {
  const v = validateSpec(
    SPEC('mode: open\nallow: [{host: a.example, hots: x}]\n').replace('http:', 'htp: {}\n  http:'),
  );
  assert.equal(v.ok, false);
  const paths = v.issues.map((i) => i.path);
  assert.ok(paths.includes('network.htp'), JSON.stringify(v.issues));
  assert.ok(paths.includes('network.http.outbound.allow[0].hots'), JSON.stringify(v.issues));
});

test('the policy example in docs/http-egress.md is a valid policy', () => {
  // dist/test/unit/policy -> repository root
  const doc = readFileSync(
    join(resolve(import.meta.dirname, '..', '..', '..', '..'), 'docs', 'http-egress.md'),
    'utf8',
  );
  const yaml = /```yaml\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(yaml, 'no yaml block in docs/http-egress.md');
  const p = parseEgressPolicy(yaml);
  assert.equal(p.allow.length, 3);
  assert.equal(p.deny.length, 3);
});
