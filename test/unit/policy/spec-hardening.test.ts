/**
 * Defects 12.15 (secrets echoed by spec errors) and 12.5 (strings the OS will see):
 * spec validation never prints a secret-bearing value or a URL's user-info, and refuses
 * NUL in environment values and arguments and NUL/newline in paths.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatSpecIssues, validateSpec } from '../../../policy/spec.js';

const head = `version: 1
attestation: { provider: virtual, allowInsecureVirtual: true, virtualPolicyFile: /p.rego }
keys: { keks: [], deks: [] }
`;

function issuesOf(yaml: string): string {
  const v = validateSpec(yaml, 'test.yaml');
  assert.equal(v.ok, false, 'the spec must be refused');
  return v.ok ? '' : formatSpecIssues(v.issues);
}

const secrets: Array<{ name: string; yaml: string; secret: string; path: RegExp }> = [
  {
    name: "a URL's user-info password",
    yaml: `${head.replace('virtualPolicyFile: /p.rego', 'virtualPolicyFile: /p.rego, maa: { endpoint: "https://alice:Hunter2Secret@maa.example/" }')}`,
    secret: 'Hunter2Secret',
    path: /attestation\.maa\.endpoint/,
  },
  {
    name: 'a user-info password in a KBS URL with a query',
    yaml: `${head.replace('virtualPolicyFile: /p.rego', 'virtualPolicyFile: /p.rego, kbs: { url: "http://u:Pw0rdSecret@127.0.0.1:8080/x?sig=SigSecret" }')}`,
    secret: 'Pw0rdSecret',
    path: /attestation\.kbs\.url/,
  },
  {
    name: 'a numeric static token',
    yaml: `${head}identities: [{ name: t, kind: static-token, token: 987654321123 }]\n`,
    secret: '987654321123',
    path: /identities\[0\]\.token/,
  },
  {
    name: 'a token given as a list',
    yaml: `${head}identities: [{ name: t, kind: static-token, token: [ListSecret] }]\n`,
    secret: 'ListSecret',
    path: /identities\[0\]\.token/,
  },
];

for (const c of secrets) {
  test(`defect 12.15: spec errors never echo ${c.name}`, () => {
    const text = issuesOf(c.yaml);
    assert.match(text, c.path, 'the field path is named');
    assert.ok(!text.includes(c.secret), `secret echoed: ${text}`);
  });
}

const osStrings: Array<{ name: string; yaml: string; path: RegExp }> = [
  {
    name: 'an application.env value with NUL',
    yaml: `${head}application: { command: [/bin/true], env: { A: "x\\0y" } }\n`,
    path: /application\.env\.A: expected a value without NUL/,
  },
  {
    name: 'an application argument with NUL',
    yaml: `${head}application: { command: [/bin/echo, "a\\0b"] }\n`,
    path: /application\.command\[1\]: expected an argument without NUL/,
  },
  {
    name: 'an environment variable name with "="',
    yaml: `${head}application: { command: [/bin/true], env: { "A=B": x } }\n`,
    path: /application\.env/,
  },
  {
    name: 'a mount path with a newline',
    yaml: `${head}datasources: [{ name: d, mount: "/mnt/a\\nb", store: { type: fs, path: /s }, protection: { mode: secure, key: k } }]\n`,
    path: /datasources\[0\]\.mount: expected a path without (NUL or newline|control) characters/,
  },
  {
    name: 'an audit log path with a newline',
    yaml: `${head}runtime: { auditLog: "/var/a\\nb.log" }\n`,
    path: /runtime\.auditLog: expected a path without NUL or newline/,
  },
];

for (const c of osStrings) {
  test(`defect 12.5: the spec refuses ${c.name}`, () => {
    assert.match(issuesOf(c.yaml), c.path);
  });
}
