/**
 * `membrane bench <suite> [--json FILE] [--quick] [--chart FILE.svg] [suite options]`:
 * runs a benchmark suite from bench/suites.ts, prints a table with ratios and the
 * targets, and optionally writes the JSON report and a bar chart. Benchmarks are
 * measurements, not gates: a missed target is reported, the exit code stays 0.
 */
import { writeFileSync } from 'node:fs';
import { renderChart } from '../../bench/chart.js';
import { machineInfo } from '../../bench/machine.js';
import { formatReport } from '../../bench/report.js';
import { SUITES } from '../../bench/suites.js';
import type { BenchReport } from '../../bench/types.js';
import { MembraneError } from '../../policy/errors.js';
import { type Options, parse } from './_args.js';
import { assertOutputFile } from './_files.js';

export const summary =
  'measure side by side with peers: aead (the hot core) or volume (the FUSE blob volume)';

const common: Options = {
  json: { type: 'string' },
  chart: { type: 'string' },
  quick: { type: 'boolean' },
};

function helpText(suiteHelp = ''): string {
  const suites = Object.entries(SUITES)
    .map(([name, s]) => `  ${name.padEnd(10)} ${s.summary}`)
    .join('\n');
  return `Usage: membrane bench <suite> [--json FILE] [--quick] [--chart FILE.svg] [suite options]

Runs a benchmark suite and prints one row per case: implementation, operation,
frame length, threads, median MB/s over repetitions, and ratios to the suite's
references. Progress goes to stderr, the table to stdout.

Suites:
${suites}

Options:
  --json FILE        write the full report as JSON (machine, cases, targets, notes)
  --chart FILE.svg   write a bar chart of the cases
  --quick            small inputs and fewer cases: a smoke run for CI (well under a minute)
  -h, --help         this help
${suiteHelp ? `\n${suiteHelp}\n` : ''}
Exit status: 0 when the suite ran (targets missed or not), 1 on an error, 2 on a usage error.`;
}

export async function main(argv: string[]): Promise<number> {
  const name = argv[0] && !argv[0].startsWith('-') ? argv[0] : undefined;
  if (!name) {
    const { help } = parse(argv, common, helpText(), false);
    if (help) return 0;
    throw new MembraneError('USAGE', `name a suite\n\n${helpText()}`);
  }
  const entry = Object.hasOwn(SUITES, name) ? SUITES[name] : undefined;
  if (!entry) {
    throw new MembraneError(
      'USAGE',
      `unknown bench suite '${name}' (known: ${Object.keys(SUITES).join(', ')})`,
    );
  }
  const suite = await entry.load();
  const help = helpText(suite.optionsHelp);
  const parsed = parse(argv.slice(1), { ...common, ...suite.options }, help);
  if (parsed.help) return 0;
  // The option set is only known at run time (it depends on the suite): plain values.
  const values = parsed.values as Record<string, string | boolean | undefined>;
  const quick = values.quick === true;
  const jsonPath = typeof values.json === 'string' ? values.json : undefined;
  const chartPath = typeof values.chart === 'string' ? values.chart : undefined;
  // Check the outputs before a run of minutes, not after it.
  if (jsonPath) await assertOutputFile(jsonPath, '--json');
  if (chartPath) await assertOutputFile(chartPath, '--chart');

  const machine = await machineInfo();
  const startedAt = new Date();
  const t0 = process.hrtime.bigint();
  const result = await suite.run({
    quick,
    values,
    machine,
    progress: (m) => process.stderr.write(`bench ${name}: ${m}\n`),
  });
  const report: BenchReport = {
    suite: name,
    quick,
    startedAt: startedAt.toISOString(),
    durationSeconds: Math.round(Number(process.hrtime.bigint() - t0) / 1e7) / 100,
    machine,
    ...result.meta,
    cases: result.cases,
    targets: result.targets,
    notes: result.notes,
  };
  console.log(formatReport(report));
  if (jsonPath) {
    write(jsonPath, JSON.stringify(report, null, 2) + '\n', 'JSON report');
    console.log(`JSON report: ${jsonPath}`);
  }
  if (chartPath) {
    write(chartPath, renderChart(report, result.chartReference), 'chart');
    console.log(`Chart: ${chartPath}`);
  }
  return 0;
}

function write(path: string, data: string, what: string): void {
  try {
    writeFileSync(path, data);
  } catch (e) {
    throw new MembraneError('IO_ERROR', `cannot write the ${what}: ${(e as Error).message}`, {
      where: path,
      cause: e,
    });
  }
}
