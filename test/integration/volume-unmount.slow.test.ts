/**
 * Issue 12, defect 1: unmounting never goes through a shell, and the process that
 * mounted can always exit. Runs a real FUSE mount in a child process (with a
 * timeout and a cleanup), at a mountpoint whose name is shell syntax.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { validateSpec } from '../../policy/spec.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const child = join(root, 'dist', 'test', 'helpers', 'mount-cycle-child.js');
const T = { timeout: 120_000 };

async function mounted(path: string): Promise<boolean> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((l) => l.split(' ')[4] === path);
}

test('defect 12.1: a mount path with shell syntax is refused and unmount never uses a shell', T, async () => {
  // The spec refuses such paths outright...
  for (const mount of ['/mnt/$(id>/tmp/x)', '/mnt/a`id`', '/mnt/a b', '/mnt/a\nb', '/mnt/a"b', '/mnt/a;b']) {
    const r = validateSpec(
      JSON.stringify({
        version: '1',
        attestation: { provider: 'virtual', allowInsecureVirtual: true, virtualPolicyFile: 'p.rego' },
        datasinks: [
          {
            name: 'out',
            store: { type: 'fs', path: 's' },
            protection: { mode: 'open', outputRules: { allow: ['*'] } },
            mount,
          },
        ],
      }),
    );
    assert.equal(r.ok, false, JSON.stringify(mount));
    assert.ok(
      r.issues.some((i) => i.path === 'datasinks[0].mount'),
      `${JSON.stringify(mount)}: ${JSON.stringify(r.issues)}`,
    );
  }

  // ...and the volume, given one anyway (it is a library too), unmounts it as data.
  const base = await mkdtemp(join(tmpdir(), 'membrane-unmount-'));
  const mp = join(base, 'mnt$(touch marker)');
  const proc = spawn(process.execPath, [child, join(base, 'store'), mp, join(base, 'staging')], {
    cwd: base,
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 90_000,
    killSignal: 'SIGKILL',
  });
  try {
    await mkdir(join(base, 'store'), { recursive: true });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    proc.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const code = await new Promise<number | null>((res) => proc.on('exit', (c) => res(c)));
    assert.equal(code, 0, `child: ${out}\n${err}`);
    assert.match(out, /^mounted .*\nunmounted\n$/);
    assert.equal(existsSync(join(base, 'marker')), false, 'the mount path was run as shell syntax');
    assert.equal(await mounted(mp), false, 'still mounted');
  } finally {
    proc.kill('SIGKILL');
    if (await mounted(mp).catch(() => false))
      await new Promise((r) => execFile('fusermount', ['-u', '-z', '--', mp], { timeout: 15_000 }, r));
    await rm(base, { recursive: true, force: true });
  }
});
