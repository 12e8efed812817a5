/**
 * Defect 12.2 (keys in core dumps): key-holding commands turn core dumps off for
 * themselves and their children, and the runtime's key copies are zeroed at destroy.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseSpec } from '../../../policy/spec.js';
import { acquireKeys } from '../../../runtime/keys.js';
import { zeroBytes } from '../../../runtime/process-hardening.js';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const hardening = resolve(here, '../../../runtime/process-hardening.js');
const dir = mkdtempSync(join(tmpdir(), 'membrane-hardening-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a child node that hardens itself, then reports what the kernel says about it and its own child. */
async function probe(env: Record<string, string>): Promise<{ dumpable: boolean; childCoreLimit: string }> {
  const script = `
    import { hardenProcess, isDumpable } from ${JSON.stringify(hardening)};
    import { execFileSync } from 'node:child_process';
    hardenProcess(() => {});
    const childCoreLimit = execFileSync('/bin/sh', ['-c', 'ulimit -c'], { encoding: 'utf8' }).trim();
    process.stdout.write(JSON.stringify({ dumpable: isDumpable(), childCoreLimit }));
  `;
  // Start from an unlimited core limit, as in the defect report.
  const { stdout } = await run(
    '/bin/sh',
    [
      '-c',
      'ulimit -c unlimited 2>/dev/null || true; exec "$0" --input-type=module -e "$1"',
      process.execPath,
      script,
    ],
    { env: { ...process.env, ...env }, timeout: 30_000 },
  );
  return JSON.parse(stdout) as { dumpable: boolean; childCoreLimit: string };
}

test('defect 12.2: a hardened process is not dumpable and its children get a core limit of 0', async () => {
  const { dumpable, childCoreLimit } = await probe({ MEMBRANE_ALLOW_CORE_DUMPS: '' });
  assert.equal(dumpable, false);
  assert.equal(childCoreLimit, '0');
});

test('defect 12.2: MEMBRANE_ALLOW_CORE_DUMPS=1 leaves core dumps on (debugging only)', async () => {
  const { dumpable, childCoreLimit } = await probe({ MEMBRANE_ALLOW_CORE_DUMPS: '1' });
  assert.equal(dumpable, true);
  assert.notEqual(childCoreLimit, '0');
});

test('defect 12.2: zeroBytes wipes every byte of a buffer, including a view into a larger one', () => {
  const whole = randomBytes(64);
  const view = whole.subarray(16, 48);
  zeroBytes(view);
  assert.ok(view.every((b) => b === 0));
  assert.ok(whole.subarray(0, 16).some((b) => b !== 0) || whole.subarray(48).some((b) => b !== 0));
});

test('defect 12.2: KeyBundle.destroy zeroes the DEK buffers it handed out', async () => {
  const dekFile = join(dir, 'dek.key');
  const dek = randomBytes(32);
  writeFileSync(dekFile, dek, { mode: 0o600 });
  const spec = parseSpec(
    `version: 1
attestation: { provider: virtual, allowInsecureVirtual: true, virtualPolicyFile: ${join(dir, 'p.rego')} }
keys:
  keks: []
  deks: [{ name: d, source: { kind: file, path: ${dekFile} } }]
`,
    'inline',
  );
  const bundle = await acquireKeys(spec, { log: () => {} });
  const held = bundle.deks.get('d')!;
  assert.deepEqual(held, dek);
  bundle.destroy();
  assert.equal(held.length, 32);
  assert.ok(
    held.every((b) => b === 0),
    'the DEK buffer is zeroed',
  );
  assert.equal(bundle.deks.size, 0);
});
