import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMembraneError } from '../../policy/errors.js';
import {
  CleanRoomSpec,
  parseSpec,
  RUNTIME_DEFAULTS,
  resolveSpecPaths,
  specIssuesOf,
  validateSpec,
} from '../../policy/spec.js';

type Json = Record<string, unknown>;

/** A complete, valid spec exercising every section. Cases below mutate a copy. */
function base(): Json {
  return {
    version: '1',
    name: 'recon',
    attestation: {
      provider: 'sev-snp',
      maa: { endpoint: 'https://shared.eus.attest.azure.net' },
      kbs: { url: 'https://kbs.example:8080' },
      securityContextDir: '/security-context',
    },
    identities: [
      { name: 'mi', kind: 'managed-identity', clientId: '00000000-0000-0000-0000-000000000001' },
      { name: 'wi', kind: 'workload-identity', tenantId: 't', clientId: 'c', tokenFile: '/var/run/token' },
      { name: 'st', kind: 'static-token', tokenFile: 'token.txt' },
    ],
    keys: {
      keks: [
        {
          name: 'kek-a',
          broker: 'azure-akv',
          kid: 'https://v.vault.azure.net/keys/kek-a/0123abcd',
          identity: 'mi',
        },
        { name: 'kek-b', broker: 'kbs', resource: 'default/kek/b' },
        { name: 'kek-l', broker: 'local', file: 'kek.pem' },
      ],
      deks: [
        { name: 'dek-a', source: { kind: 'wrapped-file', path: 'a.wrapped' }, wrappedBy: 'kek-a' },
        {
          name: 'dek-b',
          source: {
            kind: 'akv-secret',
            vault: 'https://v.vault.azure.net',
            secret: 'wrapped-b',
            identity: 'mi',
          },
          wrappedBy: 'kek-a',
        },
        { name: 'dek-out', source: { kind: 'file', path: 'out.key' } },
      ],
    },
    datasources: [
      {
        name: 'ledger-a',
        store: {
          type: 'azure-blob',
          url: 'https://acct.blob.core.windows.net',
          container: 'ledger-a',
          identity: 'mi',
        },
        protection: { mode: 'secure', key: 'dek-a', pinnedManifestDigest: 'ab'.repeat(32) },
        mount: '/mnt/remote/ledger-a',
      },
      {
        name: 'ledger-b',
        store: { type: 'fs', path: 'store/b' },
        protection: { mode: 'secure', key: 'dek-b' },
        mount: '/mnt/remote/ledger-b',
      },
    ],
    datasinks: [
      {
        name: 'report',
        store: { type: 'fs', path: 'store/report' },
        protection: { mode: 'trusted', recipientPublicKey: 'consumer.pub.pem' },
        mount: '/mnt/remote/report',
      },
      {
        name: 'sealed',
        store: {
          type: 'azure-blob',
          url: 'http://127.0.0.1:10000/devstoreaccount1',
          container: 'sealed',
          prefix: 'run1/',
          sharedKey: { account: 'devstoreaccount1', keyFile: 'azurite.key' },
        },
        protection: { mode: 'secure', key: 'dek-out' },
        mount: '/mnt/remote/sealed',
      },
      {
        name: 'public',
        store: {
          type: 'azure-blob',
          url: 'https://acct.blob.core.windows.net',
          container: 'pub',
          sasFile: 'sas.txt',
        },
        protection: { mode: 'open', outputRules: { allow: ['summary/*.csv'], maxObjectBytes: 1048576 } },
        mount: '/mnt/remote/public',
      },
    ],
    governance: {
      consent: { url: 'http://localhost:8300' },
      audit: { url: 'http://localhost:8300', scope: 'membrane' },
    },
    telemetry: { enabled: true, exporter: 'otlp', endpoint: 'http://127.0.0.1:4318' },
    application: { command: ['python3', '/app/recon.py'], env: { OUT_DIR: '/mnt/remote/report' } },
    runtime: { statusDir: '/run/membrane', healthPort: 0, auditLog: '/var/log/membrane/audit.log' },
  };
}

/** Applies `edit` to a fresh base spec; returns the JSON text. */
function variant(edit: (s: Json) => void): string {
  const s = base();
  edit(s);
  return JSON.stringify(s);
}
// biome-ignore lint/suspicious/noExplicitAny: tests poke at arbitrary places of the document
const any = (v: unknown) => v as any;

test('the full example is valid and keeps its values', () => {
  const r = validateSpec(JSON.stringify(base()), 'base.json');
  assert.deepEqual(r.issues, []);
  assert.ok(r.ok);
  assert.equal(r.spec.datasinks[2]!.protection.outputRules?.maxObjectBytes, 1048576);
  assert.equal(r.spec.runtime.healthPort, 0);
  assert.equal(r.spec.telemetry?.serviceName, 'membrane');
});

test('the deprecated field egress is read as outputRules, with a warning naming where', () => {
  const s = base();
  const p = any(s.datasinks)[2].protection;
  p.egress = p.outputRules;
  delete p.outputRules;
  const text = JSON.stringify(s, null, 1);
  const r = validateSpec(text);
  assert.ok(r.ok, JSON.stringify(r.issues));
  assert.deepEqual(r.spec.datasinks[2]!.protection.outputRules, {
    allow: ['summary/*.csv'],
    maxObjectBytes: 1048576,
  });
  assert.equal(r.warnings.length, 1);
  assert.equal(r.warnings[0]!.path, 'datasinks[2].protection.egress');
  assert.match(r.warnings[0]!.message, /deprecated: renamed to outputRules/);
  assert.equal(typeof r.warnings[0]!.line, 'number');
  const seen: string[] = [];
  parseSpec(text, 'x.json', { onWarning: (w) => seen.push(w.path) });
  assert.deepEqual(seen, ['datasinks[2].protection.egress']);
  // The current spelling warns about nothing.
  assert.deepEqual(validateSpec(JSON.stringify(base())).warnings, []);
});

test('a minimal spec gets defaults', () => {
  const spec = parseSpec(
    'version: 1\nattestation:\n  provider: virtual\n  allowInsecureVirtual: true\n  virtualPolicyFile: p.rego\n',
    'min.yaml',
  );
  assert.equal(spec.version, '1');
  assert.deepEqual(spec.identities, []);
  assert.deepEqual(spec.keys, { keks: [], deks: [] });
  assert.deepEqual(spec.datasources, []);
  assert.deepEqual(spec.datasinks, []);
  assert.deepEqual(spec.runtime, { ...RUNTIME_DEFAULTS });
  assert.equal(spec.telemetry, undefined);
  assert.equal(spec.governance, undefined);
});

test('YAML and JSON spellings of the same spec parse to the same value', () => {
  const json = JSON.stringify(base());
  const yaml = json; // JSON is YAML 1.2; also check a block-style rendering below
  const block = `version: "1"
attestation:
  provider: virtual
  allowInsecureVirtual: true
  virtualPolicyFile: p.rego
datasources:
  - name: a
    store: { type: fs, path: s }
    protection: { mode: secure, key: d }
    mount: /m/a
keys:
  deks:
    - name: d
      source: { kind: file, path: d.key }
`;
  assert.deepEqual(parseSpec(yaml), parseSpec(json));
  const fromBlock = parseSpec(block);
  const fromJson = parseSpec(
    JSON.stringify({
      version: '1',
      attestation: { provider: 'virtual', allowInsecureVirtual: true, virtualPolicyFile: 'p.rego' },
      datasources: [
        {
          name: 'a',
          store: { type: 'fs', path: 's' },
          protection: { mode: 'secure', key: 'd' },
          mount: '/m/a',
        },
      ],
      keys: { deks: [{ name: 'd', source: { kind: 'file', path: 'd.key' } }] },
    }),
  );
  assert.deepEqual(fromBlock, fromJson);
});

// ------------------------------------------------------------------ invalid cases

const invalid: Array<[string, (s: Json) => void, string, RegExp]> = [
  [
    'unknown top-level field (typo)',
    (s) => {
      s.datasource = [];
    },
    'datasource',
    /unknown field \(did you mean "datasources"\?\)/,
  ],
  [
    'wrong version',
    (s) => {
      s.version = '2';
    },
    'version',
    /expected "1", got "2"/,
  ],
  [
    'missing attestation',
    (s) => {
      delete s.attestation;
    },
    'attestation',
    /expected a mapping \(required\), got nothing/,
  ],
  [
    'unknown provider',
    (s) => {
      any(s.attestation).provider = 'tdx';
    },
    'attestation.provider',
    /expected one of "sev-snp" \| "virtual", got "tdx"/,
  ],
  [
    'virtual without acknowledgement',
    (s) => {
      s.attestation = { provider: 'virtual', virtualPolicyFile: 'p' };
    },
    'attestation.allowInsecureVirtual',
    /expected true: provider "virtual"/,
  ],
  [
    'virtual without policy file',
    (s) => {
      s.attestation = {
        provider: 'virtual',
        allowInsecureVirtual: true,
        maa: { endpoint: 'http://127.0.0.1:1' },
        kbs: { url: 'http://127.0.0.1:2' },
      };
    },
    'attestation.virtualPolicyFile',
    /expected a file with provider "virtual"/,
  ],
  [
    'allowInsecureVirtual with sev-snp',
    (s) => {
      any(s.attestation).allowInsecureVirtual = true;
    },
    'attestation.allowInsecureVirtual',
    /expected false or absent with provider "sev-snp"/,
  ],
  [
    'MAA endpoint not a URL',
    (s) => {
      any(s.attestation).maa.endpoint = 'attest.azure.net';
    },
    'attestation.maa.endpoint',
    /expected an http:\/\/ or https:\/\/ URL, got "attest.azure.net"/,
  ],
  [
    'unknown field inside maa',
    (s) => {
      any(s.attestation).maa.url = 'https://x';
    },
    'attestation.maa.url',
    /unknown field; expected one of: endpoint/,
  ],
  [
    'azure-akv KEK without MAA',
    (s) => {
      delete any(s.attestation).maa;
    },
    'attestation.maa',
    /expected an MAA endpoint .* because keys\.keks\[0\] uses broker "azure-akv"/,
  ],
  [
    'kbs KEK without KBS',
    (s) => {
      delete any(s.attestation).kbs;
    },
    'attestation.kbs',
    /because keys\.keks\[1\] uses broker "kbs"/,
  ],
  [
    'unknown identity kind',
    (s) => {
      any(s.identities)[0].kind = 'service-principal';
    },
    'identities[0].kind',
    /expected one of "managed-identity" \| "workload-identity" \| "static-token", got "service-principal"/,
  ],
  [
    'static token with both token and file',
    (s) => {
      any(s.identities)[2].token = 'abc';
    },
    'identities[2].token',
    /expected exactly one of token or tokenFile/,
  ],
  [
    'duplicate identity name',
    (s) => {
      any(s.identities)[1].name = 'mi';
    },
    'identities[1].name',
    /expected a unique identity name \("mi" is also used by identities\[0\]\)/,
  ],
  [
    'bad name characters',
    (s) => {
      any(s.identities)[0].name = 'my identity';
    },
    'identities[0].name',
    /expected a name: 1-63 letters/,
  ],
  [
    'KEK broker unknown',
    (s) => {
      any(s.keys).keks[0].broker = 'vault';
    },
    'keys.keks[0].broker',
    /expected one of "azure-akv" \| "kbs" \| "local", got "vault"/,
  ],
  [
    'AKV kid is not a key URL',
    (s) => {
      any(s.keys).keks[0].kid = 'https://v.vault.azure.net/secrets/x';
    },
    'keys.keks[0].kid',
    /expected a Key Vault key identifier/,
  ],
  [
    'KEK field of another broker',
    (s) => {
      any(s.keys).keks[1].kid = 'https://v/keys/k';
    },
    'keys.keks[1].kid',
    /unknown field; expected one of: name, broker, resource/,
  ],
  [
    'KEK identity undeclared',
    (s) => {
      any(s.keys).keks[0].identity = 'ghost';
    },
    'keys.keks[0].identity',
    /expected the name of an identity declared in identities \(declared: mi, wi, st\), got "ghost"/,
  ],
  [
    'KBS resource path malformed',
    (s) => {
      any(s.keys).keks[1].resource = 'default/kek';
    },
    'keys.keks[1].resource',
    /expected a KBS resource path <repository>\/<type>\/<tag>/,
  ],
  [
    'DEK wrappedBy undeclared KEK',
    (s) => {
      any(s.keys).deks[0].wrappedBy = 'kek-z';
    },
    'keys.deks[0].wrappedBy',
    /expected the name of a KEK declared in keys\.keks/,
  ],
  [
    'wrapped-file DEK without wrappedBy',
    (s) => {
      delete any(s.keys).deks[0].wrappedBy;
    },
    'keys.deks[0].wrappedBy',
    /expected the name of the KEK that wraps this DEK/,
  ],
  [
    'raw file DEK with wrappedBy',
    (s) => {
      any(s.keys).deks[2].wrappedBy = 'kek-a';
    },
    'keys.deks[2].wrappedBy',
    /expected absent for source kind "file"/,
  ],
  [
    'DEK source kind unknown',
    (s) => {
      any(s.keys).deks[2].source.kind = 'env';
    },
    'keys.deks[2].source.kind',
    /expected one of "file" \| "akv-secret" \| "wrapped-file", got "env"/,
  ],
  [
    'Key Vault secret DEK without wrappedBy',
    (s) => {
      delete any(s.keys).deks[1].wrappedBy;
    },
    'keys.deks[1].wrappedBy',
    /a Key Vault secret must hold a wrapped DEK/,
  ],
  [
    'Key Vault secret DEK without identity',
    (s) => {
      delete any(s.keys).deks[1].source.identity;
    },
    'keys.deks[1].source.identity',
    /expected a string \(required\), got nothing/,
  ],
  [
    'duplicate DEK name',
    (s) => {
      any(s.keys).deks[1].name = 'dek-a';
    },
    'keys.deks[1].name',
    /expected a unique DEK name/,
  ],
  [
    'datasource in trusted mode',
    (s) => {
      any(s.datasources)[0].protection = { mode: 'trusted', recipientPublicKey: 'r.pem' };
    },
    'datasources[0].protection.mode',
    /expected "secure" for a datasource/,
  ],
  [
    'datasource in open mode',
    (s) => {
      any(s.datasources)[1].protection = { mode: 'open', outputRules: { allow: ['*'] } };
    },
    'datasources[1].protection.mode',
    /expected "secure" for a datasource/,
  ],
  [
    'secure datasource without key',
    (s) => {
      delete any(s.datasources)[0].protection.key;
    },
    'datasources[0].protection.key',
    /expected the name of a DEK declared in keys\.deks, got nothing/,
  ],
  [
    'secure key references undeclared DEK',
    (s) => {
      any(s.datasinks)[1].protection.key = 'dek-zz';
    },
    'datasinks[1].protection.key',
    /expected the name of a DEK declared in keys\.deks \(declared: dek-a, dek-b, dek-out\), got "dek-zz"/,
  ],
  [
    'trusted sink without recipient',
    (s) => {
      delete any(s.datasinks)[0].protection.recipientPublicKey;
    },
    'datasinks[0].protection.recipientPublicKey',
    /expected the recipient's RSA public key file/,
  ],
  [
    'trusted sink with a key',
    (s) => {
      any(s.datasinks)[0].protection.key = 'dek-out';
    },
    'datasinks[0].protection.key',
    /expected absent with mode "trusted"/,
  ],
  [
    'open sink with a key',
    (s) => {
      any(s.datasinks)[2].protection.key = 'dek-out';
    },
    'datasinks[2].protection.key',
    /expected absent with mode "open"/,
  ],
  [
    'open sink without an output-rules allow-list',
    (s) => {
      any(s.datasinks)[2].protection.outputRules = { maxObjectBytes: 10 };
    },
    'datasinks[2].protection.outputRules.allow',
    /expected a list of object-name patterns for mode "open"/,
  ],
  [
    'output-rule pattern escapes',
    (s) => {
      any(s.datasinks)[2].protection.outputRules.allow = ['../etc/*'];
    },
    'datasinks[2].protection.outputRules.allow[0]',
    /expected a relative object-name pattern/,
  ],
  [
    'output-rule max size not a positive integer',
    (s) => {
      any(s.datasinks)[2].protection.outputRules.maxObjectBytes = 1.5;
    },
    'datasinks[2].protection.outputRules.maxObjectBytes',
    /expected an integer/,
  ],
  [
    'open sink with both outputRules and its deprecated name egress',
    (s) => {
      any(s.datasinks)[2].protection.egress = { allow: ['*'] };
    },
    'datasinks[2].protection.egress',
    /expected only outputRules \(egress is its deprecated name\), got both/,
  ],
  [
    'pinned manifest on a sink',
    (s) => {
      any(s.datasinks)[1].protection.pinnedManifestDigest = 'ab'.repeat(32);
    },
    'datasinks[1].protection.pinnedManifestDigest',
    /expected absent for a datasink/,
  ],
  [
    'pinned manifest digest malformed',
    (s) => {
      any(s.datasources)[0].protection.pinnedManifestDigest = 'XYZ';
    },
    'datasources[0].protection.pinnedManifestDigest',
    /expected a SHA-256 digest: 64 lower-case hexadecimal characters, got "XYZ"/,
  ],
  [
    'unknown protection field',
    (s) => {
      any(s.datasinks)[0].protection.recipient = 'r.pem';
    },
    'datasinks[0].protection.recipient',
    /unknown field; expected one of: mode, key, recipientPublicKey, outputRules, pinnedManifestDigest/,
  ],
  [
    'relative mount',
    (s) => {
      any(s.datasinks)[0].mount = 'mnt/report';
    },
    'datasinks[0].mount',
    /expected an absolute path \(starting with "\/"\), got "mnt\/report"/,
  ],
  [
    'non-normalised mount',
    (s) => {
      any(s.datasinks)[0].mount = '/mnt/../etc';
    },
    'datasinks[0].mount',
    /expected a normalised absolute path/,
  ],
  [
    'duplicate mount',
    (s) => {
      any(s.datasinks)[0].mount = '/mnt/remote/ledger-a';
    },
    'datasinks[0].mount',
    /expected a unique mount point \(also used by datasources\[0\]\.mount\)/,
  ],
  [
    'nested mounts',
    (s) => {
      any(s.datasinks)[0].mount = '/mnt/remote/ledger-a/out';
    },
    'datasinks[0].mount',
    /expected a mount point not nested with datasources\[0\]\.mount/,
  ],
  [
    'volume name shared by source and sink',
    (s) => {
      any(s.datasinks)[0].name = 'ledger-b';
    },
    'datasinks[0].name',
    /expected a unique volume .*"ledger-b" is also used by datasources\[1\]/,
  ],
  [
    'store type unknown',
    (s) => {
      any(s.datasources)[1].store = { type: 's3', path: 'x' };
    },
    'datasources[1].store.type',
    /expected one of "fs" \| "azure-blob", got "s3"/,
  ],
  [
    'blob container invalid',
    (s) => {
      any(s.datasources)[0].store.container = 'Ledger_A';
    },
    'datasources[0].store.container',
    /expected an Azure container name/,
  ],
  [
    'blob with two credentials',
    (s) => {
      any(s.datasources)[0].store.sas = 'sv=2020&sig=SECRET';
    },
    'datasources[0].store.sas',
    /expected at most one of identity, sas, sasFile, sharedKey/,
  ],
  [
    'blob URL with a query',
    (s) => {
      any(s.datasources)[0].store.url = 'https://acct.blob.core.windows.net/?sig=SECRET';
    },
    'datasources[0].store.url',
    /expected a URL without a query string/,
  ],
  [
    'blob store identity undeclared',
    (s) => {
      any(s.datasources)[0].store.identity = 'nobody';
    },
    'datasources[0].store.identity',
    /expected the name of an identity declared in identities/,
  ],
  [
    'shared key with neither key nor file',
    (s) => {
      delete any(s.datasinks)[1].store.sharedKey.keyFile;
    },
    'datasinks[1].store.sharedKey.keyFile',
    /expected exactly one of key or keyFile/,
  ],
  [
    'governance URL invalid',
    (s) => {
      any(s.governance).consent.url = 'ftp://gov';
    },
    'governance.consent.url',
    /expected an http:\/\/ or https:\/\/ URL, got "ftp:\/\/gov"/,
  ],
  [
    'governance unknown field',
    (s) => {
      any(s.governance).audit.topic = 'x';
    },
    'governance.audit.topic',
    /unknown field; expected one of: url, id, scope/,
  ],
  [
    'telemetry otlp without endpoint',
    (s) => {
      s.telemetry = { enabled: true, exporter: 'otlp' };
    },
    'telemetry.endpoint',
    /expected the OTLP\/HTTP endpoint URL/,
  ],
  [
    'telemetry enabled without exporter',
    (s) => {
      s.telemetry = { enabled: true };
    },
    'telemetry.exporter',
    /expected "otlp" or "file" when telemetry is enabled/,
  ],
  [
    'telemetry file exporter with endpoint',
    (s) => {
      s.telemetry = { enabled: true, exporter: 'file', file: 't.jsonl', endpoint: 'http://x' };
    },
    'telemetry.endpoint',
    /expected absent with exporter "file"/,
  ],
  [
    'telemetry enabled is a string',
    (s) => {
      s.telemetry = { enabled: 'yes', exporter: 'file', file: 't' };
    },
    'telemetry.enabled',
    /expected true or false, got "yes"/,
  ],
  [
    'application command empty',
    (s) => {
      any(s.application).command = [];
    },
    'application.command',
    /expected at least 1 item, got an empty list/,
  ],
  [
    'application env bad name',
    (s) => {
      any(s.application).env = { 'BAD-NAME': 'x' };
    },
    'application.env["BAD-NAME"]',
    /expected an environment variable name/,
  ],
  [
    'application env value not a string',
    (s) => {
      any(s.application).env = { N: 3 };
    },
    'application.env.N',
    /expected a string, got 3/,
  ],
  [
    'health port out of range',
    (s) => {
      any(s.runtime).healthPort = 70000;
    },
    'runtime.healthPort',
    /expected a number <= 65535, got 70000/,
  ],
  [
    'status dir relative',
    (s) => {
      any(s.runtime).statusDir = 'status';
    },
    'runtime.statusDir',
    /expected an absolute path/,
  ],
  [
    'audit log under a mount',
    (s) => {
      any(s.runtime).auditLog = '/mnt/remote/report/audit.log';
    },
    'runtime.auditLog',
    /expected a path outside every volume mount \(it is under datasinks\[0\]\.mount/,
  ],
  [
    'runtime unknown field',
    (s) => {
      any(s.runtime).healthHost = '0.0.0.0';
    },
    'runtime.healthHost',
    /unknown field \(did you mean "healthPort"\?\); expected one of: statusDir, healthPort, auditLog/,
  ],
  [
    'datasources not a list',
    (s) => {
      s.datasources = { name: 'x' };
    },
    'datasources',
    /expected a list, got a mapping/,
  ],
];

for (const [name, edit, path, message] of invalid) {
  test(`invalid: ${name} -> ${path}`, () => {
    const text = variant(edit);
    const r = validateSpec(text);
    assert.equal(r.ok, false, 'expected the spec to be rejected');
    const hit = r.issues.find((i) => i.path === path && message.test(i.message));
    assert.ok(
      hit,
      `no issue at ${path} matching ${message}; got:\n${r.issues.map((i) => `${i.path}: ${i.message}`).join('\n')}`,
    );
    // parseSpec throws the same list, one `path: expected ...` line per issue.
    assert.throws(
      () => parseSpec(text, 'cleanroom.json'),
      (e: unknown) => {
        assert.ok(isMembraneError(e, 'SPEC_INVALID'));
        assert.ok(e.message.includes(`  - ${path}: ${hit.message}`), e.message);
        assert.ok(e.message.includes('cleanroom.json'));
        assert.deepEqual(specIssuesOf(e), r.issues);
        return true;
      },
    );
  });
}

test('every issue is reported in one pass, structural and cross-section together', () => {
  const r = validateSpec(
    variant((s) => {
      s.datasource = [];
      any(s.attestation).provider = 'tdx';
      any(s.datasinks)[0].mount = 'relative';
      any(s.datasinks)[1].protection.key = 'ghost';
      any(s.keys).deks[0].wrappedBy = 'nokek';
      any(s.runtime).healthPort = -1;
    }),
  );
  assert.equal(r.ok, false);
  const paths = r.issues.map((i) => i.path).sort();
  assert.deepEqual(paths, [
    'attestation.provider',
    'datasinks[0].mount',
    'datasinks[1].protection.key',
    'datasource',
    'keys.deks[0].wrappedBy',
    'runtime.healthPort',
  ]);
  for (const i of r.issues) assert.match(i.message, /expected/);
});

test('secret values are never echoed in messages', () => {
  const r = validateSpec(
    variant((s) => {
      any(s.identities)[2] = { name: 'st', kind: 'static-token', token: 'TOPSECRET-TOKEN', tokenFile: 'x' };
      any(s.datasources)[0].store = {
        type: 'azure-blob',
        url: 'https://acct.blob.core.windows.net/c?sv=1&sig=TOPSECRET-SIG',
        container: 'c1c',
        sas: 'sv=1&sig=TOPSECRET-SAS',
        identity: 'mi',
      };
      any(s.datasinks)[1].store.sharedKey = {
        account: 'devstoreaccount1',
        key: 'TOPSECRET-KEY',
        keyFile: 'k',
      };
    }),
  );
  assert.equal(r.ok, false);
  const text = JSON.stringify(r.issues);
  assert.ok(r.issues.length >= 4, text);
  assert.doesNotMatch(text, /TOPSECRET/);
});

test('YAML problems are reported with their line, not thrown', () => {
  const dup = validateSpec('version: 1\nversion: 1\nattestation: {provider: virtual}\n');
  assert.equal(dup.ok, false);
  assert.equal(dup.issues[0]!.path, '(document)');
  assert.match(dup.issues[0]!.message, /expected valid YAML or JSON: .*unique/i);
  assert.equal(dup.issues[0]!.line, 2);

  const broken = validateSpec('version: 1\nattestation: [provider\n');
  assert.equal(broken.ok, false);
  assert.match(broken.issues[0]!.message, /expected valid YAML or JSON/);

  const empty = validateSpec('');
  assert.equal(empty.ok, false);
  assert.match(empty.issues[0]!.message, /expected a mapping/);
});

test('issues carry the source line of the offending field', () => {
  const text = `version: 1
attestation:
  provider: virtual
  allowInsecureVirtual: true
  virtualPolicyFile: p
datasinks:
  - name: out
    store: { type: fs, path: s }
    protection:
      mode: secure
      key: nope
    mount: /m
`;
  const r = validateSpec(text);
  assert.equal(r.ok, false);
  assert.deepEqual(
    r.issues.map((i) => [i.path, i.line]),
    [['datasinks[0].protection.key', 11]],
  );
});

test('the exported schema enforces cross-section rules on its own', () => {
  const s = base();
  any(s.datasinks)[1].protection.key = 'ghost';
  const r = CleanRoomSpec.safeParse(s);
  assert.equal(r.success, false);
  assert.ok(r.error?.issues.some((i) => i.path.join('.') === 'datasinks.1.protection.key'));
});

test('resolveSpecPaths makes relative file paths absolute against the spec directory', () => {
  const spec = resolveSpecPaths(parseSpec(JSON.stringify(base())), '/etc/membrane');
  assert.equal(spec.keys.keks[2]!.broker === 'local' && spec.keys.keks[2]!.file, '/etc/membrane/kek.pem');
  assert.equal(
    spec.datasources[1]!.store.type === 'fs' && spec.datasources[1]!.store.path,
    '/etc/membrane/store/b',
  );
  assert.equal(spec.datasinks[0]!.protection.recipientPublicKey, '/etc/membrane/consumer.pub.pem');
  assert.equal(spec.attestation.securityContextDir, '/security-context'); // already absolute: unchanged
  assert.equal(spec.datasources[0]!.mount, '/mnt/remote/ledger-a');
  const st = spec.identities[2]!;
  assert.equal(st.kind === 'static-token' && st.tokenFile, '/etc/membrane/token.txt');
});

// ------------------------------------------------------------------ shipped examples

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

test('every file in docs/examples is a valid spec', () => {
  const dir = join(repoRoot, 'docs', 'examples');
  const files = readdirSync(dir).filter((f) => /\.(ya?ml|json)$/.test(f));
  assert.ok(
    files.includes('cleanroom.local.yaml') && files.includes('cleanroom.azure.yaml'),
    files.join(','),
  );
  for (const f of files) {
    const r = validateSpec(readFileSync(join(dir, f), 'utf8'), f);
    assert.ok(r.ok, `${f}:\n${r.issues.map((i) => `${i.path}: ${i.message}`).join('\n')}`);
  }
});

test('membrane spec validate: exit 0 with a summary, exit 1 listing every issue', () => {
  const bin = join(repoRoot, 'bin', 'membrane.mjs');
  const good = spawnSync(
    process.execPath,
    [bin, 'spec', 'validate', '-f', join(repoRoot, 'docs', 'examples', 'cleanroom.local.yaml')],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(good.status, 0, good.stderr);
  assert.match(good.stdout, /valid clean-room spec "recon-local"/);
  assert.match(good.stdout, /INSECURE/);

  const dir = mkdtempSync(join(tmpdir(), 'membrane-spec-'));
  try {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'version: 1\nattestation:\n  provider: virtual\ndatasink: []\n');
    const r = spawnSync(process.execPath, [bin, 'spec', 'validate', '-f', bad], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    assert.match(r.stderr, /invalid clean-room spec \(3 issues\)/);
    assert.match(r.stderr, /- attestation\.allowInsecureVirtual: expected true/);
    assert.match(r.stderr, /- attestation\.virtualPolicyFile: expected a file/);
    assert.match(r.stderr, /- datasink: unknown field \(did you mean "datasinks"\?\)/);
    const j = spawnSync(process.execPath, [bin, 'spec', 'validate', '-f', bad, '--json'], {
      encoding: 'utf8',
    });
    assert.equal(j.status, 1);
    assert.deepEqual(
      JSON.parse(j.stdout).issues.map((i: { path: string }) => i.path),
      ['attestation.allowInsecureVirtual', 'attestation.virtualPolicyFile', 'datasink'],
    );
    // The deprecated `egress` is accepted with a warning on stderr.
    const old = join(dir, 'old.json');
    const s = base();
    const p = any(s.datasinks)[2].protection;
    p.egress = p.outputRules;
    delete p.outputRules;
    writeFileSync(old, JSON.stringify(s));
    const w = spawnSync(process.execPath, [bin, 'spec', 'validate', '-f', old], { encoding: 'utf8' });
    assert.equal(w.status, 0, w.stderr);
    assert.match(w.stderr, /warning: datasinks\[2\]\.protection\.egress: deprecated: renamed to outputRules/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
