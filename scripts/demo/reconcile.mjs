#!/usr/bin/env node
// The demo's untrusted application: reconciles two organisations' ledgers.
// It sees only ordinary files: the two mounted datasources (plaintext, read-only)
// and the mounted datasink it writes its report to. It knows nothing of keys.
//
//   reconcile.mjs <ledger-a dir> <ledger-b dir> <output dir>
//
// Each ledger is one or more CSV files: id,counterparty,amount,currency,date.
// Records are matched by id; amounts/currencies/dates are compared field by field.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

const [dirA, dirB, outDir] = process.argv.slice(2);
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
