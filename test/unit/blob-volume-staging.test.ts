/**
 * Encrypted staging: random writes, reads and truncates agree with a plain
 * in-memory model (both ciphers, tiny blocks so every edge is hit); what reaches
 * the disk contains no plaintext; tampering with or rolling back a sealed block
 * is detected; the file is removed when the staging closes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { MembraneError } from '../../policy/errors.js';
import { Staging } from '../../proxies/blob-volume/staging.js';
import { aeadBlockCipher, plainBlockCipher } from '../../proxies/blob-volume/staging-cipher.js';

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function newDir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'membrane-staging-test-'));
  dirs.push(d);
  return d;
}

/** Deterministic PRNG (mulberry32). */
function rng(seed: number) {
  let a = seed >>> 0;
  return (n: number) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * n;
  };
}

/** Path of the staging file in `dir` (it keeps its name until closed, for the descriptor pool). */
async function stagingFdPath(dir: string): Promise<string> {
  const names = (await readdir(dir)).filter((n) => n.startsWith('.membrane-staging-'));
  if (names.length !== 1) throw new Error(`expected one staging file, found ${names.length}`);
  return `${dir}/${names[0]}`;
}

async function collect(s: Staging, chunk?: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s.chunks(chunk)) parts.push(c);
  return Buffer.concat(parts);
}

for (const [name, cipher] of [
  ['aead', aeadBlockCipher],
  ['plain', plainBlockCipher],
] as const) {
  test(`staging (${name}): random writes, reads and truncates match a model`, async () => {
    const dir = await newDir();
    const B = 16;
    const s = await Staging.create({ dir, cipher: cipher(), blockSize: B, maxResidentBlocks: 2 });
    assert.equal((await readdir(dir)).length, 1, 'one staging file, removed at close');
    let model = Buffer.alloc(0);
    const r = rng(name === 'aead' ? 7 : 8);
    for (let step = 0; step < 600; step++) {
      const op = r(10);
      if (op < 6) {
        const pos = Math.floor(r(200));
        const data = Buffer.alloc(Math.floor(r(50)), step % 251);
        for (let i = 0; i < data.length; i++) data[i] = (step * 31 + i) & 0xff;
        await s.write(pos, data);
        // POSIX: a zero-byte write changes nothing, not even the size.
        if (data.length > 0 && pos + data.length > model.length)
          model = Buffer.concat([model, Buffer.alloc(pos + data.length - model.length)]);
        data.copy(model, pos);
      } else if (op < 8) {
        const pos = Math.floor(r(220));
        const out = Buffer.alloc(Math.floor(r(60)), 0xee);
        const n = await s.read(pos, out);
        const want = model.subarray(Math.min(pos, model.length), Math.min(pos + out.length, model.length));
        assert.equal(n, want.length, `read count at step ${step}`);
        assert.deepEqual(out.subarray(0, n), want, `read content at step ${step}`);
      } else if (op < 9) {
        const size = Math.floor(r(230));
        await s.truncate(size);
        model =
          size <= model.length
            ? Buffer.from(model.subarray(0, size))
            : Buffer.concat([model, Buffer.alloc(size - model.length)]);
      } else {
        assert.deepEqual(await collect(s, 3 * B + 5), model, `chunks at step ${step}`);
        if (r(2) < 1) await s.settle();
      }
      assert.equal(s.size, model.length);
    }
    assert.deepEqual(await collect(s), model);
    await s.close();
  });
}

test('staging: sealed blocks on disk hold no plaintext', async () => {
  const dir = await newDir();
  const s = await Staging.create({ dir, cipher: aeadBlockCipher(), blockSize: 4096, maxResidentBlocks: 2 });
  const marker = Buffer.from('PLAINTEXT-MARKER-0123456789');
  const data = Buffer.concat(Array.from({ length: 400 }, () => marker));
  await s.write(0, data);
  await s.settle();
  const onDisk = await readFile(await stagingFdPath(dir));
  assert.ok(onDisk.length >= data.length, 'every block reached the disk');
  assert.equal(onDisk.indexOf(marker.subarray(0, 12)), -1, 'no plaintext on disk');
  assert.deepEqual(await collect(s), data);
  await s.close();
});

test('staging: a modified or rolled-back block fails authentication', async () => {
  const dir = await newDir();
  const B = 64;
  const s = await Staging.create({ dir, cipher: aeadBlockCipher(), blockSize: B, maxResidentBlocks: 2 });
  await s.write(0, Buffer.alloc(4 * B, 1));
  await s.settle();
  const fdPath = await stagingFdPath(dir);
  const old = (await readFile(fdPath)).subarray(0, 16 + B); // slot 0 as sealed now
  await s.write(0, Buffer.alloc(B, 2)); // reseal block 0 under a new nonce
  await s.settle();
  const fh = await open(fdPath, 'r+');
  try {
    await fh.write(old, 0, old.length, 0); // roll slot 0 back
    await assert.rejects(
      s.read(0, Buffer.alloc(8)),
      (e: unknown) => e instanceof MembraneError && e.code === 'VOLUME_STAGING_AUTH',
    );
    const slot2 = 2 * (B + 16);
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, slot2 + 20);
    b[0]! ^= 1;
    await fh.write(b, 0, 1, slot2 + 20); // flip a ciphertext bit of block 2
    await assert.rejects(s.read(2 * B, Buffer.alloc(8)), /failed authentication/);
    await assert.rejects(collect(s), /failed authentication/);
  } finally {
    await fh.close();
    await s.close();
  }
});
