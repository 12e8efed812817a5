/**
 * In-process figures of `membrane bench egress`: the cost of one policy decision (what the
 * proxy asks before any DNS, decideRequest, and for the dialed address, decideAddress) on
 * a policy of realistic size, and the open-mode PII inspector's MB/s on one core.
 */
import {
  compileEgressPolicy,
  decideAddress,
  decideRequest,
  parseEgressPolicy,
} from '../policy/egress/index.js';
import type { EgressRequest, PiiKind } from '../policy/egress/types.js';
import { inspectionCorpus, measureInspection } from './inspect/throughput.js';
import { median } from './measure.js';

/**
 * 24 allow rules (exact hosts with methods and path globs, suffix rules, an IP rule), 6 deny
 * rules checked first, address exceptions: a policy larger than most clean rooms need, so
 * the figure is an upper bound for the linear scan.
 */
export function decisionPolicyYaml(): string {
  const allow: string[] = [];
  for (let i = 0; i < 20; i++)
    allow.push(
      `  - host: api${i}.partner${i % 4}.example\n    methods: [GET, POST]\n    paths: ["/v1/**", "/v2/reports/*"]`,
    );
  allow.push(
    '  - host: "*.cdn.example"\n    ports: [443]',
    '  - host: "*.storage.example"\n    methods: [PUT, GET]\n    paths: ["/bucket/**"]',
    '  - host: 203.0.113.10\n    ports: [8443]',
    '  - host: consumer.example\n    inspect: {pii: [card, iban, us-ssn, email, ip]}',
  );
  const deny = [
    '  - host: "*.internal.example"',
    '  - host: api3.partner3.example\n    paths: ["/v1/admin/**"]',
    '  - host: 10.0.0.0/8',
    '  - host: 169.254.0.0/16',
    '  - host: exfil.example.net',
    '  - host: "*"\n    methods: [DELETE]',
  ];
  return [
    'mode: open',
    'allow:',
    ...allow,
    'deny:',
    ...deny,
    'allowAddresses: ["203.0.113.10:8443", "198.51.100.0/24"]',
    '',
  ].join('\n');
}

/** A mixed workload: allowed at the end of the list, denied early and late, suffix matches, IP literals. */
function workload(): { req: EgressRequest; ips: string[] }[] {
  const out: { req: EgressRequest; ips: string[] }[] = [];
  for (let i = 0; i < 64; i++) {
    const k = i % 8;
    const req: EgressRequest =
      k === 0
        ? {
            method: 'POST',
            scheme: 'https',
            host: `API${i % 20}.Partner${(i % 20) % 4}.example.`,
            port: 443,
            path: `/v1/orders/${i}`,
          }
        : k === 1
          ? { method: 'GET', scheme: 'https', host: `img${i}.cdn.example`, port: 443, path: '/a/b.png' }
          : k === 2
            ? {
                method: 'GET',
                scheme: 'https',
                host: 'api3.partner3.example',
                port: 443,
                path: '/v1/admin/users',
              }
            : k === 3
              ? { method: 'GET', scheme: 'http', host: 'unknown.example.org', port: 80, path: '/' }
              : k === 4
                ? { method: 'GET', scheme: 'https', host: '203.0.113.10', port: 8443, path: '/x' }
                : k === 5
                  ? {
                      method: 'PUT',
                      scheme: 'https',
                      host: 'eu.storage.example',
                      port: 443,
                      path: '/bucket/a/b/c',
                    }
                  : k === 6
                    ? {
                        method: 'GET',
                        scheme: 'https',
                        host: 'api19.partner3.example',
                        port: 443,
                        path: '/v2/reports/q3',
                      }
                    : {
                        method: 'POST',
                        scheme: 'https',
                        host: 'consumer.example',
                        port: 443,
                        path: '/summary',
                      };
    // Addresses are only classified, never dialed: documentation and public-looking literals.
    const ips =
      k === 4 ? ['203.0.113.10'] : [`198.51.100.${i}`, `2001:db8::${i.toString(16)}`, '93.184.216.34'];
    out.push({ req, ips });
  }
  return out;
}

export interface DecisionCost {
  /** Median over batches of the time of one decideRequest plus one decideAddress per answer. */
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly decisionsPerSecond: number;
  readonly samples: number;
}

/** Times `batches` batches of the 64-request workload; one sample = one batch / 64. */
export function measureDecisionCost(batches: number): DecisionCost {
  const compiled = compileEgressPolicy(parseEgressPolicy(decisionPolicyYaml(), 'bench-decision-policy.yaml'));
  const work = workload();
  let sink = 0;
  const once = () => {
    for (const { req, ips } of work) {
      const d = decideRequest(compiled, req);
      if (d.verdict !== 'deny')
        for (const ip of ips) sink += decideAddress(compiled, ip, req.port).allowed ? 1 : 0;
      else sink += d.rule.length;
    }
  };
  for (let i = 0; i < 200; i++) once(); // warm-up: V8 optimises the evaluator before the clock starts
  const per: number[] = [];
  const t0 = process.hrtime.bigint();
  for (let b = 0; b < batches; b++) {
    const s = process.hrtime.bigint();
    once();
    per.push(Number(process.hrtime.bigint() - s) / 1e6 / work.length);
  }
  const totalMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (sink === 0) throw new Error('the decision workload decided nothing');
  const sorted = [...per].sort((a, b) => a - b);
  return {
    p50Ms: median(per),
    p99Ms: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.99))] as number,
    decisionsPerSecond: (batches * work.length) / (totalMs / 1e3),
    samples: batches,
  };
}

export const ALL_PII: readonly PiiKind[] = ['card', 'iban', 'us-ssn', 'email', 'ip'];

/** Inspection MB per CPU-second (one core) over a PII-free JSON corpus with every detector on. */
export function measureInspectionRate(corpusBytes: number, rounds: number) {
  return measureInspection({ pii: ALL_PII, action: 'block' }, inspectionCorpus(corpusBytes), { rounds });
}
