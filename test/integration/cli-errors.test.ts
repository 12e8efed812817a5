/**
 * Defect 12.16: every CLI mistake is a typed error with an exit code — 1 for a bad file or
 * output, 2 for a usage error — and never "unexpected error" with a stack trace. Also the
 * input hangs of defect 12.5 through the CLI (a FIFO or /dev/zero as a key file).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../../bin/membrane.mjs');
const work = mkdtempSync(join(tmpdir(), 'membrane-cli-errors-'));
after(() => rmSync(work, { recursive: true, force: true }));

function membrane(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(process.execPath, [bin, ...args], { cwd: work, timeout: 60_000 }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: number; killed?: boolean }) | null;
      res({ code: e ? (e.killed ? -1 : (e.code ?? 1)) : 0, stdout, stderr });
    });
  });
}

before(async () => {
  mkdirSync(join(work, 'in'));
  writeFileSync(join(work, 'in', 'a.csv'), 'id\n1\n');
  mkdirSync(join(work, 'a-dir'));
  writeFileSync(join(work, 'a-file'), 'not a directory\n');
  await new Promise<void>((res, rej) =>
    execFile('mkfifo', [join(work, 'a-fifo')], (e) => (e ? rej(e) : res())),
  );
  const r = await membrane(['keys', 'generate-dek', '--out', 'dek.key']);
  assert.equal(r.code, 0, r.stderr);
});

interface Case {
  name: string;
  args: string[];
  code: 1 | 2;
  /** The typed error code shown as [CODE]. */
  error: RegExp;
  /** Nothing may be written at these paths (relative to the work dir). */
  absent?: string[];
}

const P = ['protect', '--in', 'in', '--datasource', 'ds'];
const cases: Case[] = [
  {
    name: 'protect --out naming an existing file',
    args: [...P, '--out', 'a-file', '--dek', 'dek.key'],
    code: 1,
    error: /\[OUTPUT_NOT_DIRECTORY\]/,
  },
  {
    name: 'unprotect --out naming an existing file',
    args: ['unprotect', '--in', 'in', '--datasource', 'ds', '--out', 'a-file', '--dek', 'dek.key'],
    code: 1,
    error: /\[OUTPUT_NOT_DIRECTORY\]/,
  },
  {
    name: 'protect --out whose parent is a file',
    args: [...P, '--out', 'a-file/sub', '--dek', 'dek.key'],
    code: 1,
    error: /ENOTDIR.*\[OUTPUT_UNUSABLE\]/,
  },
  {
    name: 'protect --out that cannot be created (under /proc)',
    args: [...P, '--out', '/proc/membrane-test/out', '--dek', 'dek.key'],
    code: 1,
    error: /\[OUTPUT_UNUSABLE\]/,
  },
  {
    name: 'protect with a missing DEK file',
    args: [...P, '--out', 'o1', '--dek', 'missing.key'],
    code: 1,
    error: /\[FILE_UNREADABLE\]/,
    absent: ['o1'],
  },
  {
    name: 'protect with a directory as DEK file',
    args: [...P, '--out', 'o2', '--dek', 'a-dir'],
    code: 1,
    error: /\[FILE_NOT_REGULAR\]/,
    absent: ['o2'],
  },
  {
    name: 'protect with a directory as recipient',
    args: [...P, '--out', 'o3', '--recipient', 'a-dir'],
    code: 1,
    error: /\[FILE_NOT_REGULAR\]/,
    absent: ['o3'],
  },
  {
    name: 'protect with a missing recipient',
    args: [...P, '--out', 'o4', '--recipient', 'missing.pub.pem'],
    code: 1,
    error: /\[FILE_UNREADABLE\]/,
    absent: ['o4'],
  },
  {
    name: 'defect 12.5: protect with /dev/zero as DEK file',
    args: [...P, '--out', 'o5', '--dek', '/dev/zero'],
    code: 1,
    error: /\[FILE_NOT_REGULAR\]/,
    absent: ['o5'],
  },
  {
    name: 'defect 12.5: protect with a FIFO as DEK file',
    args: [...P, '--out', 'o6', '--dek', 'a-fifo'],
    code: 1,
    error: /\[FILE_NOT_REGULAR\]/,
    absent: ['o6'],
  },
  {
    name: 'unprotect with a directory as private key',
    args: ['unprotect', '--in', 'in', '--datasource', 'ds', '--out', 'o7', '--private-key', 'a-dir'],
    code: 1,
    error: /\[FILE_NOT_REGULAR\]/,
  },
  {
    name: 'emulators start --dir naming a file',
    args: ['emulators', 'start', '--dir', 'a-file'],
    code: 1,
    error: /\[OUTPUT_NOT_DIRECTORY\]/,
  },
  {
    name: 'keys generate-kek --out dir/ (would write hidden .pem files)',
    args: ['keys', 'generate-kek', '--out', 'kek-dir/', '--bits', '2048'],
    code: 2,
    error: /not a directory.*\[USAGE\]/s,
    absent: ['kek-dir'],
  },
  {
    name: 'keys generate-kek --out an existing directory',
    args: ['keys', 'generate-kek', '--out', 'a-dir', '--bits', '2048'],
    code: 2,
    error: /\[USAGE\]/,
    absent: ['a-dir/.pem', 'a-dir.pem'],
  },
  {
    name: 'protect --datasource ../x (the spec refuses it)',
    args: ['protect', '--in', 'in', '--datasource', '../x', '--out', 'o8', '--dek', 'dek.key'],
    code: 2,
    error: /--datasource: expected a name.*\[USAGE\]/s,
    absent: ['o8'],
  },
  {
    name: 'protect --datasource of 5000 characters',
    args: ['protect', '--in', 'in', '--datasource', 'd'.repeat(5000), '--out', 'o9', '--dek', 'dek.key'],
    code: 2,
    error: /\[USAGE\]/,
    absent: ['o9'],
  },
  {
    name: 'unprotect --datasource with a slash',
    args: ['unprotect', '--in', 'in', '--datasource', 'a/b', '--out', 'o10', '--dek', 'dek.key'],
    code: 2,
    error: /\[USAGE\]/,
    absent: ['o10'],
  },
  {
    name: 'a duplicated flag (--out twice)',
    args: [...P, '--out', 'o11', '--out', 'o12', '--dek', 'dek.key'],
    code: 2,
    error: /--out is given more than once.*\[USAGE\]/s,
    absent: ['o11', 'o12'],
  },
  {
    name: 'a duplicated flag on keys',
    args: ['keys', 'generate-dek', '--out', 'k1', '--out', 'k2'],
    code: 2,
    error: /more than once.*\[USAGE\]/s,
    absent: ['k1', 'k2'],
  },
  {
    name: 'bench --json naming a directory fails before running',
    args: ['bench', 'aead', '--quick', '--json', 'a-dir'],
    code: 1,
    error: /\[OUTPUT_IS_DIRECTORY\]/,
  },
  {
    name: 'bench --json in a missing directory fails before running',
    args: ['bench', 'aead', '--quick', '--json', 'missing/r.json'],
    code: 1,
    error: /\[OUTPUT_UNUSABLE\]/,
  },
];

for (const c of cases) {
  test(`defect 12.16: ${c.name} -> exit ${c.code}, typed error, no stack trace`, async () => {
    const r = await membrane(c.args);
    assert.equal(r.code, c.code, r.stderr);
    assert.match(r.stderr, c.error);
    assert.doesNotMatch(r.stderr, /unexpected error|\n\s+at /);
    for (const p of c.absent ?? []) assert.equal(existsSync(join(work, p)), false, `${p} was created`);
  });
}

test('defect 12.16: keys generate-kek --out dir/kek names the files properly', async () => {
  mkdirSync(join(work, 'keys'));
  const r = await membrane(['keys', 'generate-kek', '--out', 'keys/kek', '--bits', '2048']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(readdirSync(join(work, 'keys')).sort(), ['kek.pem', 'kek.pub.pem']);
});
