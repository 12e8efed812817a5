/**
 * `membrane bench egress`: the HTTP egress path side by side in one run, each proxy in a
 * process of its own, on loopback only:
 *   direct             — wrk straight to the upstream (the ceiling);
 *   membrane-open      — `membrane proxy http`, policy on, open mode, no inspection
 *                        (CONNECT is a blind tunnel there);
 *   membrane-open-pii  — the same with every PII detector on request bodies;
 *   tinyproxy          — Debian's tinyproxy, a small C forward proxy (the reference).
 * Load: wrk, HTTP/1.1 keep-alive, absolute-form requests through the proxies (a Lua script),
 * GET of a 1 KiB answer and POST of a JSON body; CONNECT bulk upload MB/s through each
 * proxy's tunnel against a direct connection. In process: the policy decision cost
 * (decideRequest + decideAddress) and the PII inspector's MB/s per core.
 * Runs are interleaved across implementations so that a noisy neighbour spreads over all;
 * the CPU seconds of the proxy process per request say where the time goes.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  type Child,
  connectBulk,
  runWrk,
  startMembraneProxy,
  startTinyproxy,
  startUpstream,
  type WrkResult,
  wrkVersion,
} from './egress-load.js';
import { decisionPolicyYaml, measureDecisionCost, measureInspectionRate } from './egress-micro.js';
import { inspectionCorpus } from './inspect/throughput.js';
import { formatSize, KiB, MiB, median } from './measure.js';
import { positiveNumber } from './options.js';
import type { BenchCase, BenchSuite, SuiteResult, SuiteRunContext, Target } from './types.js';
import { cpuOf, initClockTicks, toolVersion } from './volume-load.js';

export const IMPL = {
  direct: 'direct',
  membrane: 'membrane-open',
  membranePii: 'membrane-open-pii',
  tinyproxy: 'tinyproxy',
  policy: 'membrane-policy',
  inspector: 'membrane-inspector',
} as const;

export const OP = {
  get: 'GET keep-alive',
  post: 'POST keep-alive',
  connect: 'CONNECT upload',
  decide: 'decide',
  inspect: 'inspect',
} as const;

const RESPONSE_BYTES = 1 * KiB;

const optionsHelp = `egress options:
  --seconds N       duration of each wrk run (default 5, or 1 with --quick)
  --reps N          timed repetitions per case, interleaved (default 3, or 1 with --quick)
  --connections N   concurrent keep-alive connections of wrk (default 16)
  --body-kib N      POST body size (default 4)
  --connect-mib N   bytes uploaded through CONNECT per repetition (default 512, or 64 with --quick)
  --cpu-prof DIR    run Membrane's proxies with node --cpu-prof, profiles written to DIR
Requires wrk and tinyproxy (scripts/setup.sh installs both); a missing tool leaves its
cases out with a note. Only 127.0.0.1 is used.`;

export const suite: BenchSuite = {
  name: 'egress',
  summary:
    'HTTP egress proxy: keep-alive req/s, p50/p99, CONNECT MB/s vs direct and tinyproxy; decision cost, inspection',
  options: {
    seconds: { type: 'string' },
    reps: { type: 'string' },
    connections: { type: 'string' },
    'body-kib': { type: 'string' },
    'connect-mib': { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
  optionsHelp,
  run,
};

interface Plan {
  seconds: number;
  reps: number;
  connections: number;
  bodyBytes: number;
  connectBytes: number;
  decisionBatches: number;
  inspectBytes: number;
  inspectRounds: number;
  cpuProf?: string;
}

function plan(ctx: SuiteRunContext): Plan {
  const v = ctx.values;
  const q = ctx.quick;
  return {
    seconds: positiveNumber(v.seconds, '--seconds', true) ?? (q ? 1 : 5),
    reps: positiveNumber(v.reps, '--reps', true) ?? (q ? 1 : 3),
    connections: positiveNumber(v.connections, '--connections', true) ?? 16,
    bodyBytes: (positiveNumber(v['body-kib'], '--body-kib', true) ?? 4) * KiB,
    connectBytes: (positiveNumber(v['connect-mib'], '--connect-mib', true) ?? (q ? 64 : 512)) * MiB,
    decisionBatches: q ? 300 : 3000,
    inspectBytes: q ? 2 * MiB : 16 * MiB,
    inspectRounds: q ? 2 : 5,
    ...(typeof v['cpu-prof'] === 'string' ? { cpuProf: resolve(v['cpu-prof']) } : {}),
  };
}

/** The bench policy: loopback upstreams named as address exceptions, limits out of the way. */
function benchPolicy(httpPort: number, sinkPort: number, pii: boolean): string {
  return [
    'mode: open',
    'allow:',
    '  - host: 127.0.0.1',
    `    ports: [${httpPort}, ${sinkPort}]`,
    ...(pii ? ['    inspect: {pii: [card, iban, us-ssn, email, ip], action: block}'] : []),
    `allowAddresses: ["127.0.0.1:${httpPort}", "127.0.0.1:${sinkPort}"]`,
    'limits:',
    '  requestsPerSecond: 1000000000',
    '  maxConcurrentRequests: 4096',
    '  maxTunnels: 256',
    `  bytesPerDestination: ${Number.MAX_SAFE_INTEGER}`,
    '',
  ].join('\n');
}

interface Proxy {
  impl: string;
  port: number;
  child: Child;
}

interface ReqCase {
  impl: string;
  op: string;
  method: 'GET' | 'POST';
  proxy?: Proxy;
  runs: WrkResult[];
  proxyCpu: number[];
  upstreamCpu: number[];
}

async function run(ctx: SuiteRunContext): Promise<SuiteResult> {
  const p = plan(ctx);
  const notes: string[] = [];
  const cases: BenchCase[] = [];
  await initClockTicks();

  // In-process figures first, while nothing else of ours runs.
  ctx.progress(`policy decision cost: ${p.decisionBatches} batches of 64 requests`);
  const dc = measureDecisionCost(p.decisionBatches);
  cases.push({
    suite: 'egress',
    impl: IMPL.policy,
    op: OP.decide,
    frameBytes: 0,
    threads: 1,
    bytesPerSecond: 0,
    requestsPerSecond: dc.decisionsPerSecond,
    latencyP50Ms: dc.p50Ms,
    latencyP99Ms: dc.p99Ms,
    reps: dc.samples,
    note: 'decideRequest + decideAddress for each answer (1 or 3), 30-rule policy, per request',
  });
  ctx.progress(`PII inspection: ${formatSize(p.inspectBytes)} x ${p.inspectRounds}, every detector`);
  const ins = measureInspectionRate(p.inspectBytes, p.inspectRounds);
  cases.push({
    suite: 'egress',
    impl: IMPL.inspector,
    op: OP.inspect,
    frameBytes: 16 * KiB,
    threads: 1,
    bytesPerSecond: ins.mbPerSec * 1e6,
    cpuBytesPerSecond: ins.mbPerCpuSec * 1e6,
    inputBytes: ins.bytes,
    reps: p.inspectRounds,
    note: `card, iban, us-ssn, email, ip on PII-free JSON lines, 16 KiB chunks; ${ins.findings} findings`,
  });

  const wrk = await wrkVersion();
  const tiny = await toolVersion('tinyproxy', ['-v']);
  if (wrk === null) notes.push('wrk is not installed (scripts/setup.sh): no request cases.');
  if (tiny === null)
    notes.push('tinyproxy is not installed (scripts/setup.sh): no tinyproxy cases or ratios.');

  const dir = await mkdtemp(join(tmpdir(), 'membrane-bench-egress-'));
  const children: Child[] = [];
  try {
    const up = await startUpstream(RESPONSE_BYTES);
    children.push(up);
    const bodyFile = join(dir, 'body.json');
    await writeFile(bodyFile, inspectionCorpus(p.bodyBytes));
    const proxies: Proxy[] = [];
    if (tiny !== null) {
      const t = await startTinyproxy(dir);
      children.push(t);
      proxies.push({ impl: IMPL.tinyproxy, port: t.port, child: t });
    }
    for (const [impl, pii] of [
      [IMPL.membrane, false],
      [IMPL.membranePii, true],
    ] as const) {
      const file = join(dir, `${impl}.yaml`);
      await writeFile(file, benchPolicy(up.ports.http, up.ports.sink, pii));
      try {
        const m = await startMembraneProxy(file, p.cpuProf);
        children.push(m);
        proxies.push({ impl, port: m.port, child: m });
      } catch (e) {
        notes.push(`${impl}: the proxy did not start, no cases: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    const proxy = (impl: string) => proxies.find((x) => x.impl === impl);

    if (wrk !== null) {
      const reqCases: ReqCase[] = [];
      const add = (impl: string, op: string, method: 'GET' | 'POST', px?: Proxy) => {
        if (impl !== IMPL.direct && !px) return;
        reqCases.push({
          impl,
          op,
          method,
          ...(px ? { proxy: px } : {}),
          runs: [],
          proxyCpu: [],
          upstreamCpu: [],
        });
      };
      for (const [op, method] of [
        [OP.get, 'GET'],
        [OP.post, 'POST'],
      ] as const) {
        add(IMPL.direct, op, method);
        add(IMPL.tinyproxy, op, method, proxy(IMPL.tinyproxy));
        add(IMPL.membrane, op, method, proxy(IMPL.membrane));
        // GET carries no body: inspection has nothing to scan, the case would repeat membrane-open.
        if (method === 'POST') add(IMPL.membranePii, op, method, proxy(IMPL.membranePii));
      }
      const job = (c: ReqCase, seconds: number) => ({
        connectPort: c.proxy?.port ?? up.ports.http,
        upstreamPort: up.ports.http,
        viaProxy: c.proxy !== undefined,
        method: c.method,
        ...(c.method === 'POST' ? { bodyFile } : {}),
        connections: p.connections,
        seconds,
        scriptDir: dir,
      });
      ctx.progress(`warm-up: 1 s of wrk per case (${reqCases.length} cases)`);
      for (const c of reqCases) await runWrk(job(c, 1));
      for (let r = 0; r < p.reps; r++) {
        for (const c of reqCases) {
          ctx.progress(
            `rep ${r + 1}/${p.reps}: ${c.impl} ${c.op}, ${p.seconds} s, ${p.connections} connections`,
          );
          const pid = c.proxy?.child.pid;
          const [pc0, uc0] = await Promise.all([pid ? cpuOf(pid) : undefined, cpuOf(up.pid)]);
          const res = await runWrk(job(c, p.seconds));
          const [pc1, uc1] = await Promise.all([pid ? cpuOf(pid) : undefined, cpuOf(up.pid)]);
          c.runs.push(res);
          if (pc0 && pc1) c.proxyCpu.push((pc1.process - pc0.process) / Math.max(1, res.requests));
          if (uc0 && uc1) c.upstreamCpu.push((uc1.process - uc0.process) / Math.max(1, res.requests));
        }
      }
      for (const c of reqCases) cases.push(reqCaseRow(c, p, notes));
    }

    // CONNECT bulk: direct connection vs each proxy's tunnel (Membrane's: open mode, no inspection = blind).
    const tunnels = [undefined, proxy(IMPL.tinyproxy), proxy(IMPL.membrane)].filter(
      (x, i) => i === 0 || x !== undefined,
    );
    const secs: number[][] = tunnels.map(() => []);
    const cpus: number[][] = tunnels.map(() => []);
    ctx.progress(`CONNECT upload warm-up (${formatSize(16 * MiB)} per path)`);
    for (const t of tunnels) await connectBulk(up.ports.sink, 16 * MiB, t?.port);
    for (let r = 0; r < p.reps; r++) {
      for (const [i, t] of tunnels.entries()) {
        ctx.progress(
          `rep ${r + 1}/${p.reps}: CONNECT upload ${formatSize(p.connectBytes)} ${t ? `via ${t.impl}` : 'direct'}`,
        );
        const c0 = t ? await cpuOf(t.child.pid) : undefined;
        secs[i]!.push(await connectBulk(up.ports.sink, p.connectBytes, t?.port));
        const c1 = t ? await cpuOf(t.child.pid) : undefined;
        if (c0 && c1) cpus[i]!.push(c1.process - c0.process);
      }
    }
    for (const [i, t] of tunnels.entries()) {
      const rates = secs[i]!.map((s) => p.connectBytes / s);
      const cpu = cpus[i]!.length ? median(cpus[i]!) : undefined;
      cases.push({
        suite: 'egress',
        impl: t?.impl ?? IMPL.direct,
        op: OP.connect,
        frameBytes: MiB,
        threads: 1,
        bytesPerSecond: median(rates),
        minBytesPerSecond: Math.min(...rates),
        maxBytesPerSecond: Math.max(...rates),
        inputBytes: p.connectBytes,
        reps: p.reps,
        ...(cpu !== undefined
          ? { note: `proxy CPU ${((cpu / p.connectBytes) * 1e9).toFixed(2)} s per GB (1 MiB writes)` }
          : { note: '1 MiB writes' }),
      });
    }
  } finally {
    for (const c of children.reverse()) await c.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }

  addRatios(cases);
  notes.push(
    `wrk: 1 thread, ${p.connections} keep-alive connections, ${p.seconds} s per run, ${p.reps} interleaved ` +
      `repetitions (median; p50/p99 are medians of each run's percentiles); GET answers ${formatSize(RESPONSE_BYTES)}, ` +
      `POST sends ${formatSize(p.bodyBytes)} of JSON without PII. "MB/s" of request cases is payload bytes ` +
      `(answer for GET, body for POST) x req/s. Proxy CPU = CPU seconds of the proxy process per request.`,
    'tinyproxy 1.11 keeps no client connection alive: it closes after every answer and wrk reconnects ' +
      '(wrk counts the close as a read error; here it is reported in the note, not as an error). That is part ' +
      'of its figure: keep-alive is what the target compares.',
    'CONNECT upload: the client (this process), the proxy and the sink (the upstream process) each need a core; ' +
      `on ${ctx.machine.cpus} CPU(s) the proxied paths compete for cores the direct path does not need.`,
  );
  if (ctx.machine.cpus <= 2 || (ctx.machine.loadAverage[0] ?? 0) > 0.5)
    notes.push(
      `Shared machine (${ctx.machine.cpus} CPUs, load ${ctx.machine.loadAverage[0]} at start): wrk, the proxy ` +
        'and the upstream share the cores; compare within this run, not across machines.',
    );
  return {
    cases,
    targets: targets(cases),
    notes,
    meta: {
      tools: { wrk, tinyproxy: tiny },
      connections: p.connections,
      secondsPerRun: p.seconds,
      decisionPolicy: { rules: 30, yaml: decisionPolicyYaml().length },
    },
  };
}

function reqCaseRow(c: ReqCase, p: Plan, notes: string[]): BenchCase {
  const rps = c.runs.map((r) => r.requestsPerSecond);
  const errors = c.runs.reduce((a, r) => a + r.errors, 0);
  const closes = c.runs.reduce((a, r) => a + r.closes, 0);
  const requests = c.runs.reduce((a, r) => a + r.requests, 0);
  if (errors > 0)
    notes.push(
      `${c.impl} ${c.op}: ${errors} errors (socket errors or non-2xx answers): its figures are suspect.`,
    );
  const payload = c.method === 'POST' ? p.bodyBytes : RESPONSE_BYTES;
  const bps = rps.map((r) => r * payload);
  const cpu = c.proxyCpu.length ? median(c.proxyCpu) : undefined;
  return {
    suite: 'egress',
    impl: c.impl,
    op: c.op,
    frameBytes: payload,
    threads: 1,
    bytesPerSecond: median(bps),
    minBytesPerSecond: Math.min(...bps),
    maxBytesPerSecond: Math.max(...bps),
    requestsPerSecond: median(rps),
    latencyP50Ms: median(c.runs.map((r) => r.p50Ms)),
    latencyP99Ms: median(c.runs.map((r) => r.p99Ms)),
    errors,
    reps: c.runs.length,
    ...(cpu !== undefined ? { proxyCpuMicrosPerRequest: cpu * 1e6 } : {}),
    ...noteOf([
      ...(c.upstreamCpu.length ? [`upstream CPU ${(median(c.upstreamCpu) * 1e6).toFixed(0)} us/req`] : []),
      ...(closes > 0
        ? [
            `server closed the connection after ${((closes / Math.max(1, requests)) * 100).toFixed(0)}% of answers`,
          ]
        : []),
    ]),
  };
}

const noteOf = (parts: string[]) => (parts.length ? { note: parts.join('; ') } : {});

function addRatios(cases: BenchCase[]): void {
  const find = (impl: string, op: string) => cases.find((c) => c.impl === impl && c.op === op);
  for (const c of cases) {
    if (c.op === OP.get || c.op === OP.post) {
      const t = find(IMPL.tinyproxy, c.op);
      const d = find(IMPL.direct, c.op);
      if (t?.requestsPerSecond && c.requestsPerSecond && c.impl !== IMPL.tinyproxy)
        c.ratioToTinyproxy = c.requestsPerSecond / t.requestsPerSecond;
      if (d?.requestsPerSecond && c.requestsPerSecond && c.impl !== IMPL.direct)
        c.ratioToDirect = c.requestsPerSecond / d.requestsPerSecond;
    } else if (c.op === OP.connect && c.impl !== IMPL.direct) {
      const d = find(IMPL.direct, c.op);
      if (d) c.ratioToDirect = c.bytesPerSecond / d.bytesPerSecond;
    }
  }
}

function targets(cases: BenchCase[]): Target[] {
  const out: Target[] = [];
  const find = (impl: string, op: string) => cases.find((c) => c.impl === impl && c.op === op);
  const m = find(IMPL.membrane, OP.get);
  const t = find(IMPL.tinyproxy, OP.get);
  if (m?.requestsPerSecond && t?.requestsPerSecond) {
    const v = m.requestsPerSecond / t.requestsPerSecond;
    out.push({
      name: 'keep-alive GET req/s, membrane-open (policy on) / tinyproxy',
      value: v,
      target: 2,
      met: v >= 2,
    });
  }
  if (m?.latencyP99Ms !== undefined && t?.latencyP99Ms) {
    const v = m.latencyP99Ms / t.latencyP99Ms;
    out.push({
      name: 'keep-alive GET p99, membrane-open / tinyproxy (<= target)',
      value: v,
      target: 1,
      met: v <= 1,
    });
  }
  const mc = find(IMPL.membrane, OP.connect);
  if (mc?.ratioToDirect !== undefined)
    out.push({
      name: 'CONNECT upload MB/s, membrane-open blind tunnel / direct',
      value: mc.ratioToDirect,
      target: 0.8,
      met: mc.ratioToDirect >= 0.8,
    });
  const d = find(IMPL.policy, OP.decide);
  if (d?.latencyP50Ms !== undefined)
    out.push({
      name: 'policy decision p50 in ms (< target)',
      value: d.latencyP50Ms,
      target: 0.2,
      met: d.latencyP50Ms < 0.2,
    });
  const i = find(IMPL.inspector, OP.inspect);
  if (i?.cpuBytesPerSecond !== undefined) {
    const v = i.cpuBytesPerSecond / 1e6;
    out.push({ name: 'PII inspection MB/s per core (CPU-time basis)', value: v, target: 50, met: v >= 50 });
  }
  return out;
}
