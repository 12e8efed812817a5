/**
 * The egress policy: the file `membrane proxy http --policy` and `membrane policy
 * check-egress --policy` read, and the clean-room spec's `network.http.outbound` section
 * (the same schema; see policy/spec.ts). docs/http-egress.md is the operator reference;
 * keep the two in step.
 *
 * Shape (fail-closed: strict objects, default deny):
 *   mode            default protection mode of allow rules: secure | trusted | open (required)
 *   allow[]         {host, ports?, methods?, paths?, mode?, action?: allow|report, tls?, inspect?, dek?}
 *   deny[]          {host, ports?, methods?, paths?, action?: deny|report} — evaluated first
 *   allowAddresses  IP, IP:port or CIDR exceptions to address classification
 *   limits          sizes, rates, budgets and timeouts (defaults below)
 *
 * Files (tls.ca, inspect.schema) are paths here; whoever does I/O loads them and hands the
 * contents to compileEgressPolicy (rules.ts).
 */
import { z } from 'zod';
import { MembraneError } from '../errors.js';
import { compileGlob } from '../glob.js';
import {
  formatIssues,
  type Issue,
  type RawIssue,
  readDocument,
  renderIssues,
  zodIssueText,
} from '../issues.js';
import { parseAddressPattern } from './address.js';
import { normaliseHost } from './host.js';

export const EgressErrorCode = {
  /** The policy file (or spec section) is malformed; the error carries `issues`. */
  PolicyInvalid: 'EGRESS_POLICY_INVALID',
} as const;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/** `*`, `*.suffix`, a host name, an IP literal, or (deny rules and IP rules) a CIDR. */
const hostPattern = z.string().superRefine((h, ctx) => {
  if (h === '*') return;
  if (h.includes('/')) {
    const p = parseAddressPattern(h);
    if (typeof p === 'string') ctx.addIssue({ code: 'custom', message: p });
    return;
  }
  const name = h.startsWith('*.') ? h.slice(2) : h;
  if (name.includes('*')) {
    ctx.addIssue({
      code: 'custom',
      message: 'expected "*", "*.suffix" or a host name ("*" only as the whole host or its first label)',
    });
    return;
  }
  const n = normaliseHost(name);
  if (!n.ok) ctx.addIssue({ code: 'custom', message: `expected a host name or IP address (${n.reason})` });
  else if (h.startsWith('*.') && n.kind !== 'name')
    ctx.addIssue({ code: 'custom', message: 'expected a host name after "*." (not an IP address)' });
});

const port = z.number().int().min(1).max(65535);
const portRange = z
  .string()
  .regex(/^\d{1,5}-\d{1,5}$/, 'expected a port (1-65535) or a range "low-high"')
  .superRefine((r, ctx) => {
    const [lo, hi] = r.split('-').map(Number) as [number, number];
    if (lo < 1 || hi > 65535 || lo > hi)
      ctx.addIssue({ code: 'custom', message: 'expected a range "low-high" with 1 <= low <= high <= 65535' });
  });

/** RFC 9110 token: methods are matched upper-cased (some servers treat `delete` as DELETE). */
const method = z
  .string()
  .regex(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}$/, 'expected an HTTP method such as GET or POST')
  .transform((m) => m.toUpperCase());

/**
 * Path globs (policy/glob.ts syntax, written with the leading "/"): `*` within one segment,
 * `**` across segments, `?` one character, `[a-z]` classes, `{a,b}` alternatives.
 */
const pathGlob = z.string().superRefine((p, ctx) => {
  if (!p.startsWith('/') || p.length > 512)
    ctx.addIssue({
      code: 'custom',
      message: 'expected a path pattern starting with "/" (at most 512 characters)',
    });
  else if (/[^\x21-\x7e]/.test(p) || p.includes('#'))
    ctx.addIssue({
      code: 'custom',
      message: 'expected a path pattern of visible ASCII characters (no spaces, no fragment)',
    });
  else if (/\*{3,}/.test(p))
    ctx.addIssue({ code: 'custom', message: 'expected "*" or "**", not three or more stars in a row' });
  else if (p !== '/') {
    try {
      compileGlob(p.slice(1));
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `expected a valid path glob: ${(e as Error).message}` });
    }
  }
});

const pathField = z.string().superRefine((p, ctx) => {
  if (p.length === 0) ctx.addIssue({ code: 'custom', message: 'expected a non-empty path' });
  else if (p.includes('\0'))
    ctx.addIssue({ code: 'custom', message: 'expected a path without NUL characters' });
});

/** Base64 of a SHA-256 digest (44 characters), as `openssl ... | base64` and HPKP print it. */
const pin = z
  .string()
  .regex(/^[A-Za-z0-9+/]{43}=$/, 'expected a base64 SHA-256 SPKI digest (44 characters ending in "=")');

const Mode = z.enum(['secure', 'trusted', 'open']);

const Tls = z.object({ ca: pathField.optional(), pins: z.array(pin).min(1).optional() }).strict();

const Inspect = z
  .object({
    pii: z.array(z.enum(['card', 'iban', 'us-ssn', 'email', 'ip'])).default([]),
    schema: pathField.optional(),
    action: z.enum(['block', 'report']).default('block'),
  })
  .strict()
  .superRefine((i, ctx) => {
    if (i.pii.length === 0 && i.schema === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['pii'],
        message: 'expected at least one PII detector or a schema (an empty inspect section checks nothing)',
      });
  });

const matchFields = {
  host: hostPattern,
  ports: z
    .array(z.union([port, portRange]))
    .min(1)
    .optional(),
  methods: z.array(method).min(1).optional(),
  paths: z.array(pathGlob).min(1).optional(),
};

const AllowRule = z
  .object({
    ...matchFields,
    mode: Mode.optional(),
    action: z.enum(['allow', 'report']).default('allow'),
    tls: Tls.optional(),
    inspect: Inspect.optional(),
    /** Name of the DEK that seals bodies in secure mode (the spec's keys.deks, or --dek). */
    dek: z.string().regex(NAME_RE, 'expected a DEK name (1-63 letters, digits, ".", "_", "-")').optional(),
  })
  .strict();

const DenyRule = z.object({ ...matchFields, action: z.enum(['deny', 'report']).default('deny') }).strict();

export const LIMIT_DEFAULTS = {
  maxRequestBytes: 16 * 1024 * 1024,
  maxBodyBytes: 8 * 1024 * 1024,
  maxHeaderBytes: 16 * 1024,
  requestsPerSecond: 200,
  maxConcurrentRequests: 64,
  maxTunnels: 32,
  bytesPerDestination: 1024 * 1024 * 1024,
  connectTimeoutMs: 10_000,
  headersTimeoutMs: 30_000,
  idleTimeoutMs: 60_000,
} as const;

const positive = (d: number, max = Number.MAX_SAFE_INTEGER) => z.number().int().min(1).max(max).default(d);

const Limits = z
  .object({
    /** Request line, headers and body together. */
    maxRequestBytes: positive(LIMIT_DEFAULTS.maxRequestBytes),
    maxBodyBytes: positive(LIMIT_DEFAULTS.maxBodyBytes),
    maxHeaderBytes: positive(LIMIT_DEFAULTS.maxHeaderBytes, 1024 * 1024),
    /** Sustained rate over the whole proxy (token bucket; bursts up to one second's worth). */
    requestsPerSecond: positive(LIMIT_DEFAULTS.requestsPerSecond),
    maxConcurrentRequests: positive(LIMIT_DEFAULTS.maxConcurrentRequests),
    maxTunnels: positive(LIMIT_DEFAULTS.maxTunnels),
    /** Bytes sent to one destination host over the proxy's life (both directions of tunnels count up). */
    bytesPerDestination: positive(LIMIT_DEFAULTS.bytesPerDestination),
    connectTimeoutMs: positive(LIMIT_DEFAULTS.connectTimeoutMs, 600_000),
    headersTimeoutMs: positive(LIMIT_DEFAULTS.headersTimeoutMs, 600_000),
    idleTimeoutMs: positive(LIMIT_DEFAULTS.idleTimeoutMs, 3_600_000),
  })
  .strict()
  .superRefine((l, ctx) => {
    for (const f of ['maxBodyBytes', 'maxHeaderBytes'] as const)
      if (l[f] > l.maxRequestBytes)
        ctx.addIssue({
          code: 'custom',
          path: [f],
          message: `expected at most maxRequestBytes (${l.maxRequestBytes}), got ${l[f]}`,
        });
  })
  .default({});

const allowAddress = z.string().superRefine((a, ctx) => {
  const p = parseAddressPattern(a);
  if (typeof p === 'string') ctx.addIssue({ code: 'custom', message: p });
});

/** The schema without cross-field rules (issue rendering walks it to list allowed fields). */
export const EgressPolicyBase = z
  .object({
    mode: Mode,
    allow: z.array(AllowRule).default([]),
    deny: z.array(DenyRule).default([]),
    allowAddresses: z.array(allowAddress).default([]),
    limits: Limits,
  })
  .strict();

export const EgressPolicySchema = EgressPolicyBase.superRefine((p, ctx) => {
  for (const i of egressCrossCheck(p)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
});

export type EgressPolicy = z.output<typeof EgressPolicySchema>;
export type EgressPolicyInput = z.input<typeof EgressPolicySchema>;
export type EgressAllowRule = EgressPolicy['allow'][number];
export type EgressDenyRule = EgressPolicy['deny'][number];
export type EgressLimits = EgressPolicy['limits'];

/**
 * Rules across fields, on parsed output: a rule's effective mode decides what it may carry.
 * `requireDek`: in the clean-room spec every secure rule names its DEK (the standalone proxy
 * takes one key with --dek instead).
 */
export function egressCrossCheck(p: EgressPolicy, opts: { requireDek?: boolean } = {}): RawIssue[] {
  const out: RawIssue[] = [];
  p.allow.forEach((r, i) => {
    const mode = r.mode ?? p.mode;
    if (r.inspect && mode !== 'open')
      out.push({
        path: ['allow', i, 'inspect'],
        message: `expected absent with mode "${mode}" (inspection applies to mode "open", where plaintext leaves)`,
      });
    if (r.dek !== undefined && mode !== 'secure')
      out.push({
        path: ['allow', i, 'dek'],
        message: `expected absent with mode "${mode}" (a DEK seals bodies in mode "secure" only)`,
      });
    if (opts.requireDek && mode === 'secure' && r.dek === undefined)
      out.push({
        path: ['allow', i, 'dek'],
        message: 'expected the name of a DEK declared in keys.deks for mode "secure"',
      });
  });
  return out;
}

export type EgressPolicyValidation =
  | { ok: true; policy: EgressPolicy; issues: [] }
  | { ok: false; issues: Issue[] };

/** Validates egress policy text (YAML or JSON). Never throws. */
export function validateEgressPolicy(text: string): EgressPolicyValidation {
  const read = readDocument(text);
  if (!read.ok) return { ok: false, issues: read.issues };
  const r = EgressPolicySchema.safeParse(read.raw);
  if (r.success) return { ok: true, policy: r.data, issues: [] };
  const raw = r.error.issues.flatMap((i) => zodIssueText(i, read.raw, EgressPolicyBase));
  return { ok: false, issues: renderIssues(raw, read.lineOf) };
}

/** A typed EGRESS_POLICY_INVALID error listing every issue; `issues` is attached. */
export function egressPolicyError(issues: Issue[], file?: string): MembraneError & { issues: Issue[] } {
  const n = issues.length;
  return Object.assign(
    new MembraneError(
      EgressErrorCode.PolicyInvalid,
      `egress policy${file ? ` ${file}` : ''} is invalid (${n} issue${n === 1 ? '' : 's'}):\n${formatIssues(issues)}`,
    ),
    { issues },
  );
}

/** Parses and validates a policy file's text; throws EGRESS_POLICY_INVALID with every issue. */
export function parseEgressPolicy(text: string, file?: string): EgressPolicy {
  const v = validateEgressPolicy(text);
  if (v.ok) return v.policy;
  throw egressPolicyError(v.issues, file);
}

/** The issues carried by an EGRESS_POLICY_INVALID error. */
export function egressIssuesOf(e: unknown): Issue[] | undefined {
  return e instanceof MembraneError && e.code === EgressErrorCode.PolicyInvalid
    ? (e as MembraneError & { issues?: Issue[] }).issues
    : undefined;
}

/** Every file the policy references (tls.ca, inspect.schema), as written, without duplicates. */
export function egressPolicyFiles(p: EgressPolicy): string[] {
  const s = new Set<string>();
  for (const r of p.allow) {
    if (r.tls?.ca) s.add(r.tls.ca);
    if (r.inspect?.schema) s.add(r.inspect.schema);
  }
  return [...s];
}

/** Copy of the policy with every file path mapped by `f` (e.g. made absolute against a base directory). */
export function mapEgressPolicyPaths(p: EgressPolicy, f: (path: string) => string): EgressPolicy {
  const c: EgressPolicy = structuredClone(p);
  for (const r of c.allow) {
    if (r.tls?.ca) r.tls.ca = f(r.tls.ca);
    if (r.inspect?.schema) r.inspect.schema = f(r.inspect.schema);
  }
  return c;
}
