/**
 * Defect 12.5 (hangs): key and input files are read only when they are regular files,
 * and never beyond a cap — /dev/zero, a FIFO or a directory is a typed error at once.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isMembraneError } from '../../../policy/errors.js';
import { readCapped } from '../../../runtime/read-capped.js';

const dir = mkdtempSync(join(tmpdir(), 'membrane-readcapped-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const fifo = join(dir, 'fifo');
execFileSync('mkfifo', [fifo]);
mkdirSync(join(dir, 'a-dir'));
writeFileSync(join(dir, 'ok.key'), Buffer.alloc(32, 7));
writeFileSync(join(dir, 'big.key'), Buffer.alloc(1025, 1));
symlinkSync(join(dir, 'ok.key'), join(dir, 'link.key'));

const cases: Array<{ name: string; path: string; code?: string; bytes?: number }> = [
  { name: '/dev/zero is refused, not read without end', path: '/dev/zero', code: 'FILE_NOT_REGULAR' },
  { name: 'a FIFO is refused, not waited on', path: fifo, code: 'FILE_NOT_REGULAR' },
  { name: 'a directory is refused', path: join(dir, 'a-dir'), code: 'FILE_NOT_REGULAR' },
  { name: 'a missing file is a typed error', path: join(dir, 'missing'), code: 'FILE_UNREADABLE' },
  { name: 'a file over the cap is refused', path: join(dir, 'big.key'), code: 'FILE_TOO_LARGE' },
  { name: 'a regular file under the cap is read whole', path: join(dir, 'ok.key'), bytes: 32 },
  { name: 'a symbolic link to a regular file is read', path: join(dir, 'link.key'), bytes: 32 },
];

for (const c of cases) {
  test(`defect 12.5: read-capped: ${c.name}`, async () => {
    const p = readCapped(c.path, { maxBytes: 1024, what: 'test key file' });
    if (c.code) {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(isMembraneError(e, c.code), String(e));
        assert.match(e.message, /test key file/);
        return true;
      });
    } else {
      assert.equal((await p).length, c.bytes);
    }
  });
}
