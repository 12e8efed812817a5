/**
 * `membrane proxy http` — a contract called by outside checks: `--policy F --listen
 * 127.0.0.1:PORT [--dek K]`, prints the listening address and the HTTP_PROXY value, runs
 * until SIGTERM and then exits 0. Without `--auth`, `curl -x http://127.0.0.1:PORT` works.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { header, run, startUpstream, type Upstream } from '../helpers/http-egress.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const bin = join(root, 'bin', 'membrane.mjs');
// The policy evaluator is developed on another branch; the end-to-end rows need it.
const evaluator = existsSync(join(root, 'dist', 'policy', 'egress', 'index.js'));

let dir: string;
let up: Upstream;
let other: Upstream;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'membrane-proxy-cli-'));
  up = await startUpstream();
  other = await startUpstream();
});
after(async () => {
  await up.close();
  await other.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('membrane proxy http', () => {
  const usage: [string, string[], RegExp][] = [
    ['no kind', ['proxy'], /Usage: membrane proxy http/],
    ['an unknown kind', ['proxy', 'sql'], /unknown proxy kind 'sql'/],
    ['no --policy', ['proxy', 'http', '--listen', '127.0.0.1:0'], /missing required option --policy/],
    ['no --listen', ['proxy', 'http', '--policy', 'p.yaml'], /missing required option --listen/],
    [
      'a non-loopback --listen',
      ['proxy', 'http', '--policy', 'p.yaml', '--listen', '0.0.0.0:3128'],
      /--listen must be a loopback address/,
    ],
    [
      'a --listen without a port',
      ['proxy', 'http', '--policy', 'p.yaml', '--listen', '127.0.0.1'],
      /--listen must be HOST:PORT/,
    ],
  ];
  for (const [what, args, message] of usage) {
    test(`${what} is a usage error (exit 2)`, async () => {
      const r = await run(process.execPath, [bin, ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stdout + r.stderr, message);
    });
  }

  test('runs on a policy file: allowed calls pass, others get the reason, SIGTERM stops it with exit 0', {
    skip: !evaluator && 'policy/egress is not in this build',
  }, async () => {
    const policy = join(dir, 'egress.yaml');
    writeFileSync(
      policy,
      [
        'mode: open',
        'allow:',
        '  - host: 127.0.0.1',
        `    ports: [${up.port}]`,
        'allowAddresses:',
        `  - 127.0.0.1:${up.port}`,
        '',
      ].join('\n'),
    );
    const child = spawn(
      process.execPath,
      [bin, 'proxy', 'http', '--policy', policy, '--listen', '127.0.0.1:0'],
      { stdio: 'pipe' },
    );
    try {
      const lines = await new Promise<string[]>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (c) => {
          out += c;
          if (/HTTP_PROXY=.*\n/.test(out)) resolve(out.trim().split('\n'));
        });
        child.once('exit', (code) => reject(new Error(`exited ${code} before listening`)));
      });
      const listen = /^listening (127\.0\.0\.1:\d+)$/.exec(lines[0] ?? '')?.[1];
      assert.ok(listen, lines.join('\n'));
      assert.equal(lines[1], `HTTP_PROXY=http://${listen}`);
      const ok = await run('curl', ['-sS', '-i', '-x', `http://${listen}`, `http://127.0.0.1:${up.port}/x`]);
      assert.match(ok.stdout, /^HTTP\/1\.1 200/);
      const no = await run('curl', [
        '-sS',
        '-i',
        '-x',
        `http://${listen}`,
        `http://127.0.0.1:${other.port}/x`,
      ]);
      assert.match(no.stdout, /^HTTP\/1\.1 403/);
      assert.ok(header(no.stdout.split('\r\n\r\n')[0] ?? '', 'membrane-reason'));
      assert.equal(other.connections, 0);
    } finally {
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      assert.equal(await exited, 0);
    }
  });
});
