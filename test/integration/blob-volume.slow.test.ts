/**
 * The FUSE volume with real tools, end to end: data protected by `membrane
 * protect`, mounted as a pinned datasource and read by find, sha256sum, cp -r,
 * tar, fio (random reads with verification), sqlite3 (read-only database) and
 * python3's csv module; writes refused with EROFS; tampering, swapping and
 * manifest mismatches detected while mounted (EIO + audit), other files still
 * served. Datasinks written by cp, dd, tar and python and read back with
 * `membrane unprotect`; trusted sinks readable only with the recipient's key;
 * open sinks enforcing output rules. And a process SIGKILLed while a sink is
 * being written leaves only complete objects, and its stale mount is cleaned by
 * the next mount.
 *
 * This process serves the mounts on its own main thread, so everything here is
 * asynchronous (fs/promises, execFile): a synchronous call touching a mount
 * would deadlock it.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash, generateKeyPair, randomBytes } from 'node:crypto';
import { cp, mkdir, mkdtemp, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import {
  type AuditEvent,
  type MountedVolume,
  mountVolume,
  type VolumeOptions,
} from '../../proxies/blob-volume/index.js';
import { FsStore } from '../../proxies/blob-volume/store/fs-store.js';
import { dekKeyring, openBuffer, rsaKeyring } from '../../proxies/core/index.js';

const root = resolve(import.meta.dirname, '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');
const DS = 'ledgers';
const T = { timeout: 90_000 };

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}
/** bash -c, asynchronously; never rejects (tests assert on the exit code). */
function sh(cmd: string, cwd = base): Promise<Run> {
  return new Promise((res) => {
    execFile('bash', ['-c', cmd], { cwd, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      res({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}
const q = (p: string) => `'${p.replace(/'/g, `'\\''`)}'`;
const membrane = (...args: string[]) => sh(`${q(process.execPath)} ${q(bin)} ${args.map(q).join(' ')}`, root);
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
function ok(r: Run, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

let base: string;
let src: string;
let store: string;
let dekFile: string;
let dek: Buffer;
let digest: string;
const originals = new Map<string, string>(); // relative path -> sha256
const events: AuditEvent[] = [];
const audit = { emit: (e: AuditEvent) => void events.push(e) };
const mounted: MountedVolume[] = [];

async function mount(
  o: Partial<VolumeOptions> & Pick<VolumeOptions, 'name' | 'kind' | 'protection'>,
  dir: string,
  at: string,
) {
  const v = await mountVolume({
    store: new FsStore(dir),
    mountpoint: join(base, 'mnt', at),
    stagingDir: join(base, 'staging'),
    audit,
    log: () => {},
    ...o,
  });
  mounted.push(v);
  return v;
}

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(p)));
    else out.push(p);
  }
  return out;
}
async function hashes(dir: string): Promise<Map<string, string>> {
  const m = new Map<string, string>();
  for (const f of await walk(dir)) m.set(relative(dir, f), sha256(await readFile(f)));
  return m;
}
const sorted = (m: Map<string, string>) => [...m.entries()].sort();

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'membrane-volume-'));
  src = join(base, 'src');
  store = join(base, 'store');
  await mkdir(join(src, 'nested', 'deep'), { recursive: true });
  const rows = ['id,org,amount'];
  for (let i = 1; i <= 2000; i++) rows.push(`${i},org-${i % 7},${i * 3}`);
  await writeFile(join(src, 'ledger.csv'), `${rows.join('\n')}\n`);
  await writeFile(join(src, 'nested', 'deep', 'random.bin'), randomBytes(3 * 1024 * 1024 + 12_345));
  await writeFile(join(src, 'empty.txt'), '');
  await writeFile(join(src, 'name with spaces.txt'), 'spaces are fine\n');
  ok(
    await sh(
      `sqlite3 src/db.sqlite "create table t(id integer primary key, amount integer);
       with recursive c(x) as (select 1 union all select x+1 from c where x<5000) insert into t(amount) select x*3 from c;"`,
    ),
    'sqlite3 create',
  );
  ok(
    await sh(
      'fio --name=mk --rw=write --bs=4k --size=8M --filename=src/fio.dat --verify=crc32c --do_verify=0 --ioengine=psync --output=/dev/null',
    ),
    'fio create',
  );
  for (const [k, v] of await hashes(src)) originals.set(k, v);
  dek = randomBytes(32);
  dekFile = join(base, 'dek.key');
  await writeFile(dekFile, dek, { mode: 0o600 });
  const out = ok(
    await membrane(
      'protect',
      '--in',
      src,
      '--out',
      store,
      '--datasource',
      DS,
      '--dek',
      dekFile,
      '--frame-length',
      '16384',
      '--json',
    ),
    'membrane protect',
  );
  digest = JSON.parse(out).manifest.digest;
});

after(async () => {
  for (const v of mounted) await v.unmount().catch(() => {});
  if (base) {
    for (const d of await readdir(join(base, 'mnt')).catch(() => [] as string[]))
      await sh(`fusermount -u -z ${q(join(base, 'mnt', d))} 2>/dev/null || true`);
    await rm(base, { recursive: true, force: true });
  }
});

test('datasource: find, sha256sum, cp -r and tar see exactly the protected files', T, async () => {
  const v = await mount(
    {
      name: DS,
      kind: 'datasource',
      protection: { mode: 'secure', keyring: dekKeyring(dek) },
      pinnedManifest: { digest },
    },
    store,
    'ds',
  );
  const m = v.mountpoint;
  const found = ok(await sh(`find . -type f | sort`, m), 'find')
    .trim()
    .split('\n')
    .map((p) => p.slice(2));
  assert.deepEqual(found, [...originals.keys()].sort(), 'no manifest.json, nothing else');
  const sums = ok(await sh(`find . -type f -print0 | xargs -0 sha256sum`, m), 'sha256sum');
  const got = new Map(
    sums
      .trim()
      .split('\n')
      .map((l) => [l.slice(66).replace(/^\.\//, ''), l.slice(0, 64)]),
  );
  assert.deepEqual(sorted(got), sorted(originals));
  ok(await sh(`cp -r ${q(m)} ${q(join(base, 'copy'))}`), 'cp -r');
  assert.deepEqual(sorted(await hashes(join(base, 'copy'))), sorted(originals));
  await mkdir(join(base, 'untar'));
  ok(await sh(`tar c -C ${q(m)} . | tar x -C ${q(join(base, 'untar'))}`), 'tar');
  assert.deepEqual(sorted(await hashes(join(base, 'untar'))), sorted(originals));
  assert.equal(
    ok(await sh(`stat -c %s nested/deep/random.bin`, m), 'stat').trim(),
    String(3 * 1024 * 1024 + 12_345),
  );
  assert.deepEqual(
    events.filter((e) => e.type.startsWith('object.')),
    [],
    'no integrity events',
  );
});

test('datasource: fio random 4 KiB reads verify every block', T, async () => {
  const file = join(base, 'mnt', 'ds', 'fio.dat');
  const r = await sh(
    `fio --name=verify --rw=randread --bs=4k --size=8M --filename=${q(file)} --verify=crc32c --ioengine=psync --readonly`,
  );
  ok(r, 'fio randread verify');
  assert.match(r.stdout, /err= 0/);
  assert.doesNotMatch(r.stdout + r.stderr, /verify failed|bad/i);
});

test('datasource: sqlite3 opens the database read-only and queries it', T, async () => {
  const db = join(base, 'mnt', 'ds', 'db.sqlite');
  const out = ok(
    await sh(`sqlite3 ${q(`file:${db}?mode=ro&immutable=1`)} 'select count(*), sum(amount) from t;'`),
    'sqlite3',
  );
  assert.equal(out.trim(), '5000|37507500');
  const ro = ok(await sh(`sqlite3 -readonly ${q(db)} 'select max(id) from t;'`), 'sqlite3 -readonly');
  assert.equal(ro.trim(), '5000');
});

test('datasource: python3 reads the CSV with the csv module', T, async () => {
  const csvPath = join(base, 'mnt', 'ds', 'ledger.csv');
  const py = `import csv,sys\nrows=list(csv.DictReader(open(sys.argv[1],newline='')))\nprint(len(rows), sum(int(r['amount']) for r in rows))`;
  const out = ok(await sh(`python3 -c ${q(py)} ${q(csvPath)}`), 'python3');
  assert.equal(out.trim(), `2000 ${3 * ((2000 * 2001) / 2)}`);
});

test('datasource: every write operation fails with EROFS', T, async () => {
  const m = join(base, 'mnt', 'ds');
  for (const cmd of [
    'touch new.txt',
    'echo x >> ledger.csv',
    'rm empty.txt',
    'mkdir newdir',
    'mv empty.txt moved.txt',
    'truncate -s 0 ledger.csv',
    'chmod 600 ledger.csv',
    'ln -s ledger.csv link',
  ]) {
    const r = await sh(cmd, m);
    assert.notEqual(r.code, 0, cmd);
    assert.match(r.stderr, /Read-only file system/, cmd);
  }
  assert.equal(sha256(await readFile(join(m, 'ledger.csv'))), originals.get('ledger.csv'));
});

test(
  'tampering while mounted: a flipped byte and a swap are EIO and audited; other files still read',
  T,
  async () => {
    const tstore = join(base, 'tstore');
    await cp(store, tstore, { recursive: true });
    const v = await mount(
      { name: DS, kind: 'datasource', protection: { mode: 'secure', keyring: dekKeyring(dek) } },
      tstore,
      'tamper',
    );
    const m = v.mountpoint;
    ok(await sh(`cat nested/deep/random.bin ledger.csv > /dev/null`, m), 'read before tampering');
    const target = join(tstore, 'nested', 'deep', 'random.bin');
    const fh = await open(target, 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, 1_500_000);
    b[0]! ^= 0x01;
    await fh.write(b, 0, 1, 1_500_000);
    await fh.close();
    const bad = await sh(`cat nested/deep/random.bin > /dev/null`, m);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Input\/output error/);
    assert.equal(
      ok(await sh(`sha256sum ledger.csv`, m), 'sha256sum').slice(0, 64),
      originals.get('ledger.csv'),
    );
    const auth = events.find(
      (e) => e.type === 'object.auth_failure' && e.subject === 'nested/deep/random.bin',
    );
    assert.ok(auth, 'audited');
    assert.equal((auth.details as { code: string }).code, 'FORMAT_FRAME_AUTH');

    // Swap two objects: each is bound to its own path, so both now fail.
    await rename(join(tstore, 'ledger.csv'), join(tstore, 'swap.tmp'));
    await rename(join(tstore, 'name with spaces.txt'), join(tstore, 'ledger.csv'));
    await rename(join(tstore, 'swap.tmp'), join(tstore, 'name with spaces.txt'));
    for (const f of ['ledger.csv', 'name with spaces.txt']) {
      const r = await sh(`cat ${q(f)}`, m);
      assert.notEqual(r.code, 0, f);
      assert.match(r.stderr, /Input\/output error/, f);
      assert.equal(r.stdout, '', 'nothing of it is returned');
      const e = events.find((x) => x.type === 'object.auth_failure' && x.subject === f);
      assert.equal((e?.details as { code: string } | undefined)?.code, 'FORMAT_CONTEXT_MISMATCH', f);
    }
    ok(
      await sh(`sqlite3 ${q(`file:${join(m, 'db.sqlite')}?mode=ro&immutable=1`)} 'select count(*) from t;'`),
      'others still read',
    );
  },
);

test(
  'pinned manifest: a replaced object or a missing one is EIO and audited; unlisted objects are hidden',
  T,
  async () => {
    const pstore = join(base, 'pstore');
    await cp(store, pstore, { recursive: true });
    // A valid object for the same path and plaintext, from another protect run: another message ID.
    const again = join(base, 'reprotect');
    ok(
      await membrane(
        'protect',
        '--in',
        join(src, 'ledger.csv'),
        '--out',
        again,
        '--datasource',
        DS,
        '--dek',
        dekFile,
        '--frame-length',
        '16384',
      ),
      'protect again',
    );
    ok(
      await membrane(
        'protect',
        '--in',
        join(src, 'empty.txt'),
        '--out',
        join(base, 'extra'),
        '--datasource',
        DS,
        '--dek',
        dekFile,
      ),
      'protect extra',
    );
    const v = await mount(
      {
        name: DS,
        kind: 'datasource',
        protection: { mode: 'secure', keyring: dekKeyring(dek) },
        pinnedManifest: { digest },
      },
      pstore,
      'pinned',
    );
    const m = v.mountpoint;
    await cp(join(again, 'ledger.csv'), join(pstore, 'ledger.csv'));
    await rm(join(pstore, 'name with spaces.txt'));
    await cp(join(base, 'extra', 'empty.txt'), join(pstore, 'unlisted.txt'));
    const r = await sh('cat ledger.csv', m);
    assert.match(r.stderr, /Input\/output error/);
    assert.equal(r.stdout, '');
    assert.ok(events.some((e) => e.type === 'object.manifest_mismatch' && e.subject === 'ledger.csv'));
    const miss = await sh(`cat ${q('name with spaces.txt')}`, m);
    assert.match(miss.stderr, /Input\/output error/);
    assert.ok(events.some((e) => e.type === 'object.missing' && e.subject === 'name with spaces.txt'));
    const names = ok(await sh('ls -A', m), 'ls')
      .trim()
      .split('\n');
    assert.ok(!names.includes('unlisted.txt') && !names.includes('manifest.json'), names.join(','));
    assert.equal(ok(await sh('sha256sum fio.dat', m), 'sha256sum').slice(0, 64), originals.get('fio.dat'));

    // A manifest that is not the pinned one: the volume does not mount.
    await assert.rejects(
      mount(
        {
          name: DS,
          kind: 'datasource',
          protection: { mode: 'secure', keyring: dekKeyring(dek) },
          pinnedManifest: { digest: 'ab'.repeat(32) },
        },
        pstore,
        'wrongpin',
      ),
      /not the pinned digest/,
    );
  },
);

test(
  'secure datasink: cp, dd, tar and python write; unprotect reads back exactly; nothing plaintext staged',
  T,
  async () => {
    const sstore = join(base, 'sink-store');
    const v = await mount(
      { name: 'results', kind: 'datasink', protection: { mode: 'secure', keyring: dekKeyring(dek) } },
      sstore,
      'sink',
    );
    const m = v.mountpoint;
    ok(
      await sh(`cp -r ${q(src)} copy && mkdir tarred && tar c -C ${q(src)} . | tar x -C tarred`, m),
      'cp/tar into the sink',
    );
    ok(await sh('dd if=/dev/urandom of=dd.bin bs=1M count=8 status=none', m), 'dd');
    const ddSum = ok(await sh('sha256sum dd.bin', m), 'read back dd.bin').slice(0, 64);
    ok(
      await sh('echo first > note.txt && mv note.txt renamed.txt && echo gone > gone.txt && rm gone.txt', m),
      'mv/rm',
    );
    const py = `import os\nf=open('open-unlinked.txt','w')\nf.write('x'*100000)\nf.flush()\nos.unlink('open-unlinked.txt')\nf.write('y')\nf.close()\nprint(sorted(os.listdir('.')))`;
    const listing = ok(await sh(`python3 -c ${q(py)}`, m), 'python unlink-while-open');
    assert.doesNotMatch(listing, /fuse_hidden|open-unlinked/);
    // Staging files keep a name while the mount lives (the descriptor pool reopens them), sealed.
    for (const n of await readdir(join(base, 'staging')))
      assert.equal(
        (await readFile(join(base, 'staging', n))).indexOf('spaces are fine'),
        -1,
        `${n} is sealed`,
      );
    await v.unmount();
    assert.deepEqual(await readdir(join(base, 'staging')), [], 'staging files are removed at unmount');
    const stored = (await walk(sstore)).map((f) => relative(sstore, f)).sort();
    assert.ok(!stored.some((p) => /fuse_hidden|gone\.txt|note\.txt|open-unlinked/.test(p)), stored.join(','));
    for (const f of stored)
      assert.equal((await readFile(join(sstore, f))).indexOf('spaces are fine'), -1, `${f} is sealed`);
    const out = join(base, 'unprotected');
    ok(
      await membrane('unprotect', '--in', sstore, '--out', out, '--datasource', 'results', '--dek', dekFile),
      'membrane unprotect',
    );
    const back = await hashes(out);
    for (const [k, h] of originals) {
      assert.equal(back.get(`copy/${k}`), h, `copy/${k}`);
      assert.equal(back.get(`tarred/${k}`), h, `tarred/${k}`);
    }
    assert.equal(back.get('dd.bin'), ddSum);
    assert.equal(back.get('renamed.txt'), sha256(Buffer.from('first\n')));
    assert.equal(back.size, 2 * originals.size + 2);
    assert.ok(events.some((e) => e.type === 'object.committed' && e.subject === 'dd.bin'));
  },
);

test('trusted datasink: only the recipient private key opens what was written', T, async () => {
  const gen = promisify(generateKeyPair);
  const { publicKey, privateKey } = await gen('rsa', { modulusLength: 2048 });
  const priv = join(base, 'recipient.pem');
  await writeFile(priv, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const tstore = join(base, 'trusted-store');
  const v = await mount(
    {
      name: 'consumer',
      kind: 'datasink',
      protection: { mode: 'trusted', recipient: rsaKeyring({ publicKey }) },
    },
    tstore,
    'trusted',
  );
  ok(await sh(`cp ${q(join(src, 'ledger.csv'))} report.csv`, v.mountpoint), 'cp');
  await v.unmount();
  ok(
    await membrane(
      'unprotect',
      '--in',
      tstore,
      '--out',
      join(base, 'recipient-out'),
      '--datasource',
      'consumer',
      '--private-key',
      priv,
    ),
    'unprotect with the private key',
  );
  assert.equal(
    sha256(await readFile(join(base, 'recipient-out', 'report.csv'))),
    originals.get('ledger.csv'),
  );
  const denied = await membrane(
    'unprotect',
    '--in',
    tstore,
    '--out',
    join(base, 'dek-out'),
    '--datasource',
    'consumer',
    '--dek',
    dekFile,
  );
  assert.notEqual(denied.code, 0);
  await assert.rejects(
    openBuffer(await readFile(join(tstore, 'report.csv')), {
      keyring: dekKeyring(dek),
      expect: { datasource: 'consumer', path: 'report.csv' },
    }),
    /NO_KEY|no keyring|decrypt/i,
  );
});

test(
  'open datasink: plaintext out under output rules; violations are EACCES/EFBIG and audited',
  T,
  async () => {
    const ostore = join(base, 'open-store');
    const v = await mount(
      {
        name: 'public',
        kind: 'datasink',
        protection: { mode: 'open', outputRules: { allow: ['*.csv'], maxObjectBytes: 100_000 } },
      },
      ostore,
      'open',
    );
    const m = v.mountpoint;
    ok(await sh(`cp ${q(join(src, 'ledger.csv'))} ok.csv`, m), 'allowed copy');
    const name = await sh(`cp ${q(join(src, 'name with spaces.txt'))} secret.txt`, m);
    assert.notEqual(name.code, 0);
    assert.match(name.stderr, /Permission denied/);
    const size = await sh('dd if=/dev/zero of=big.csv bs=1k count=200 status=none', m);
    assert.notEqual(size.code, 0);
    assert.match(size.stderr, /File too large/);
    const mv = await sh('mv ok.csv ok.txt', m);
    assert.match(mv.stderr, /Permission denied/);
    await v.unmount();
    assert.equal(
      sha256(await readFile(join(ostore, 'ok.csv'))),
      originals.get('ledger.csv'),
      'plaintext, unchanged',
    );
    const bigSize = (await readFile(join(ostore, 'big.csv'))).length;
    assert.ok(bigSize <= 100_000, `what was committed respects the limit (${bigSize})`);
    assert.deepEqual((await readdir(ostore)).sort(), ['big.csv', 'ok.csv']);
    const denied = events.filter(
      (e) => e.type === 'output.denied' && (e.details as { volume: string }).volume === 'public',
    );
    assert.ok(
      denied.some((e) => e.subject === 'secret.txt' && (e.details as { rule: string }).rule === 'name'),
    );
    assert.ok(denied.some((e) => e.subject === 'big.csv' && (e.details as { rule: string }).rule === 'size'));
    assert.ok(denied.some((e) => e.subject === 'ok.txt' && (e.details as { rule: string }).rule === 'name'));
  },
);

test(
  'SIGKILL mid-write leaves only complete objects; the stale mount is cleaned by the next mount',
  T,
  async (t) => {
    const kstore = join(base, 'crash-store');
    const kmnt = join(base, 'mnt', 'crash');
    await mkdir(kstore, { recursive: true });
    const child: ChildProcess = spawn(
      process.execPath,
      [
        join(root, 'dist', 'test', 'helpers', 'volume-child.js'),
        kstore,
        kmnt,
        join(base, 'staging'),
        dek.toString('hex'),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((res, rej) => {
      child.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && res());
      child.on('exit', (c) => rej(new Error(`child exited early (${c})`)));
    });
    const FILE = 8 * 1024 * 1024;
    const writer = sh(
      `for i in $(seq 1 40); do dd if=/dev/urandom of=f$i.bin bs=1M count=8 status=none || exit 1; done`,
      kmnt,
    );
    // Kill while a commit is in flight if we can catch one (a temp file in the store), else after a few objects.
    const deadline = Date.now() + 20_000;
    let sawTemp = false;
    for (;;) {
      const names = await readdir(kstore).catch(() => [] as string[]);
      sawTemp = names.some((n) => n.startsWith('.membrane-tmp-'));
      if ((sawTemp && names.length > 2) || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 2));
    }
    child.kill('SIGKILL');
    const w = await writer;
    assert.notEqual(w.code, 0, 'the writer saw the mount die');
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r),
    );

    // Every object the store lists decrypts completely; leftovers of the interrupted commit are not listed.
    const fs = new FsStore(kstore);
    const listed: string[] = [];
    for await (const info of fs.list()) listed.push(info.path);
    assert.ok(listed.length >= 1, 'some files were committed before the kill');
    for (const p of listed) {
      const plain = await openBuffer(await readFile(join(kstore, p)), {
        keyring: dekKeyring(dek),
        expect: { datasource: 'crash-sink', path: p },
      });
      assert.equal(plain.length, FILE, `${p} is complete`);
    }
    const raw = await readdir(kstore);
    assert.deepEqual(raw.filter((n) => !n.startsWith('.membrane-tmp-')).sort(), [...listed].sort());

    // The mount is stale now (ENOTCONN); mounting again at the same place detaches it first.
    const stale = await sh(`ls ${q(kmnt)}`);
    assert.match(stale.stderr, /Transport endpoint is not connected/);
    const again = await mount(
      { name: 'crash-sink', kind: 'datasink', protection: { mode: 'secure', keyring: dekKeyring(dek) } },
      kstore,
      'crash',
    );
    const seen = ok(await sh('ls', again.mountpoint), 'ls after remount')
      .trim()
      .split('\n')
      .sort();
    assert.deepEqual(seen, [...listed].sort());
    const swept = (await readdir(kstore)).filter((n) => n.startsWith('.membrane-tmp-'));
    assert.deepEqual(swept, [], 'temp files of the killed commit are swept at the next mount');
    t.diagnostic(
      `killed ${sawTemp ? 'during a commit' : 'between commits'}; ${listed.length} complete object(s)`,
    );
    await again.unmount();
  },
);
