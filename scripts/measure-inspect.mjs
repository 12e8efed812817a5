// Measures open-mode PII inspection MB/s on one core (needs `npm run build` first):
//   node scripts/measure-inspect.mjs [MB=32]
import { inspectionCorpus, measureInspection } from '../dist/bench/inspect/throughput.js';

const mb = Number(process.argv[2] ?? 32);
const corpus = inspectionCorpus(mb * 1e6);
const all = ['card', 'iban', 'us-ssn', 'email', 'ip'];
for (const pii of [all, ['card'], ['iban'], ['us-ssn'], ['email'], ['ip']]) {
  const r = measureInspection({ pii, action: 'block' }, corpus, { rounds: 3 });
  console.log(
    `${pii.join('+').padEnd(28)} ${r.mbPerCpuSec.toFixed(1).padStart(7)} MB/s per core (CPU time)` +
      `  ${r.mbPerSec.toFixed(1).padStart(7)} MB/s wall  findings: ${r.findings}`,
  );
}
