/**
 * Azure Key Vault / Managed HSM secure-key-release policy, grammar version 1.0.0:
 * a strict parser, a pure evaluator and a text formatter (used by the Key Vault
 * emulator and by `membrane policy explain`). No I/O.
 *
 * Grammar (https://learn.microsoft.com/azure/key-vault/keys/policy-grammar):
 *   policy    = { "version": "1.0.0", ("anyOf" | "allOf"): [ authority, ... ] }
 *   authority = { "authority": "<issuer>", ("allOf" | "anyOf"): [ condition, ... ] }
 *   condition = { "claim": "<dot.path>", <operator>: <value> }
 *             | { "allOf": [ condition, ... ] } | { "anyOf": [ condition, ... ] }
 *   operator  = equals | notEquals | less | lessOrEquals | greater | greaterOrEquals | exists
 *   value     = string | number | true | false          (objects/arrays are not allowed)
 * "If a specified claim isn't present, its condition is considered to haven't been met."
 * "Claim names allow dot notation ... Array specifications aren't presently supported."
 * An authority may carry allOf or anyOf, "both aren't allowed together".
 *
 * Parsing decisions (fail closed: a policy we cannot read exactly is an error, never
 * "allow"):
 * - Member names are matched case-insensitively (Key Vault is a .NET service whose JSON
 *   binding is case-insensitive, and the EBNF itself spells them "anyof"/"allof"), but
 *   unknown members, duplicate members and empty arrays are errors, so a typo cannot
 *   silently drop a condition.
 * - `version` is required and must be exactly "1.0.0".
 * - Ordering operators take a number (or a numeric string); `exists` takes a boolean
 *   (or "true"/"false").
 *
 * Comparison rules (the documentation does not spell them out; these mirror what Key
 * Vault accepts in practice, e.g. the Azure confidential-sidecar sample policies write
 * `"x-ms-sevsnpvm-is-debuggable": "false"` for a boolean claim):
 * 1. A claim that is absent (or JSON null) fails every operator except `exists: false`,
 *    which passes exactly when the claim is absent.
 * 2. `exists: true` passes when the claim is present.
 * 3. equals/notEquals on scalars:
 *    - string vs string: exact, case-sensitive ordinal comparison (hex digests and
 *      attestation types are emitted lower-case by MAA; we do not fold case);
 *    - boolean claim vs "true"/"false" (ASCII case-insensitive, like .NET bool.Parse)
 *      or vs a boolean;
 *    - number claim vs a number or a numeric string ("2" matches 2 and 2.0);
 *    - a string claim vs a number/boolean policy value is compared the same way in the
 *      other direction (claim "2" matches 2, claim "true" matches true);
 *    - anything else is "not equal".
 *    notEquals passes when the claim is present, scalar, and not equal by these rules.
 * 4. less/lessOrEquals/greater/greaterOrEquals compare numerically; a claim that is not
 *    a number or numeric string fails the condition.
 * 5. An object or array claim fails every operator except `exists` (the grammar
 *    compares scalars only).
 * 6. Authorities: the caller supplies the claims of the token whose issuer matches the
 *    authority (Key Vault compares the token's `iss` to the authority; see
 *    `sameAuthority`). No matching token = every condition of that authority fails.
 */
import { MembraneError } from './errors.js';

export const RELEASE_POLICY_VERSION = '1.0.0';

export type PolicyOperator =
  | 'equals'
  | 'notEquals'
  | 'less'
  | 'lessOrEquals'
  | 'greater'
  | 'greaterOrEquals'
  | 'exists';
export type PolicyValue = string | number | boolean;
export type Combinator = 'allOf' | 'anyOf';

export interface ClaimCondition {
  kind: 'claim';
  claim: string;
  op: PolicyOperator;
  value: PolicyValue;
  /** JSON path of this condition inside the policy, e.g. `anyOf[0].allOf[2]`. */
  path: string;
}
export interface GroupCondition {
  kind: Combinator;
  conditions: Condition[];
  path: string;
}
export type Condition = ClaimCondition | GroupCondition;

export interface AuthorityRule {
  authority: string;
  combine: Combinator;
  conditions: Condition[];
  path: string;
}

export interface ReleasePolicy {
  version: typeof RELEASE_POLICY_VERSION;
  combine: Combinator;
  authorities: AuthorityRule[];
}

export interface ConditionResult {
  authority: string;
  claim: string;
  op: string;
  expected: unknown;
  actual: unknown;
  pass: boolean;
  /** JSON path of the condition inside the policy. */
  path: string;
  /** Why it failed, when it did (missing claim, no token from the authority, ...). */
  reason?: string;
}

/** Evaluation tree, for explaining nested allOf/anyOf. */
export interface VerdictNode {
  kind: 'policy' | 'authority' | Combinator | 'claim';
  path: string;
  pass: boolean;
  /** For kind 'policy' and 'authority': how the children combine. */
  combine?: Combinator;
  authority?: string;
  /** For kind 'authority': whether a token from that issuer was supplied. */
  tokenFound?: boolean;
  result?: ConditionResult;
  children?: VerdictNode[];
}

export interface PolicyVerdict {
  allowed: boolean;
  /** Every claim condition, in policy order (all are evaluated: no short-circuit). */
  results: ConditionResult[];
  /** Claims whose failure caused the denial (empty when allowed). */
  failedClaims: string[];
  tree: VerdictNode;
}

const OPERATORS: readonly PolicyOperator[] = [
  'equals',
  'notEquals',
  'less',
  'lessOrEquals',
  'greater',
  'greaterOrEquals',
  'exists',
];
const ORDERING = new Set<PolicyOperator>(['less', 'lessOrEquals', 'greater', 'greaterOrEquals']);
const MAX_DEPTH = 32;
const MAX_CONDITIONS = 1000;
const NUMERIC = /^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$/;

// ---------------------------------------------------------------- parsing

function invalid(path: string, detail: string): MembraneError {
  return new MembraneError('POLICY_INVALID', `invalid release policy: ${detail}`, {
    where: path || '(root)',
  });
}

const join = (base: string, member: string) => (base ? `${base}.${member}` : member);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Members by lower-cased name; rejects duplicates that differ only in case. */
function members(obj: Record<string, unknown>, path: string): Map<string, { name: string; value: unknown }> {
  const m = new Map<string, { name: string; value: unknown }>();
  for (const [name, value] of Object.entries(obj)) {
    const key = name.toLowerCase();
    const prev = m.get(key);
    if (prev) throw invalid(path, `duplicate member "${prev.name}" / "${name}"`);
    m.set(key, { name, value });
  }
  return m;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

interface Budget {
  conditions: number;
}

function parseConditionArray(
  value: unknown,
  path: string,
  combine: Combinator,
  depth: number,
  budget: Budget,
): Condition[] {
  const p = join(path, combine);
  if (!Array.isArray(value))
    throw invalid(p, `${combine} must be an array of conditions, got ${describe(value)}`);
  if (value.length === 0) throw invalid(p, `${combine} must hold at least one condition`);
  return value.map((c, i) => parseCondition(c, `${p}[${i}]`, depth + 1, budget));
}

function parseCondition(raw: unknown, path: string, depth: number, budget: Budget): Condition {
  if (depth > MAX_DEPTH) throw invalid(path, `conditions nested deeper than ${MAX_DEPTH} levels`);
  if (++budget.conditions > MAX_CONDITIONS) throw invalid(path, `more than ${MAX_CONDITIONS} conditions`);
  if (!isPlainObject(raw)) throw invalid(path, `a condition must be an object, got ${describe(raw)}`);
  const m = members(raw, path);
  const allowed = new Set(['claim', 'allof', 'anyof', ...OPERATORS.map((o) => o.toLowerCase())]);
  for (const { name } of m.values())
    if (!allowed.has(name.toLowerCase())) throw invalid(path, `unknown member "${name}" in condition`);

  const allOf = m.get('allof');
  const anyOf = m.get('anyof');
  if (allOf || anyOf) {
    if (allOf && anyOf) throw invalid(path, 'a condition cannot have both allOf and anyOf');
    if (m.size !== 1) throw invalid(path, 'an allOf/anyOf condition cannot also have a claim or an operator');
    const combine: Combinator = allOf ? 'allOf' : 'anyOf';
    return {
      kind: combine,
      conditions: parseConditionArray((allOf ?? anyOf)!.value, path, combine, depth, budget),
      path,
    };
  }

  const claim = m.get('claim');
  if (!claim) throw invalid(path, 'condition needs a "claim" (or allOf/anyOf)');
  if (typeof claim.value !== 'string' || claim.value.length === 0)
    throw invalid(path, `claim must be a non-empty string, got ${describe(claim.value)}`);
  const name = claim.value;
  if (name.includes('['))
    throw invalid(path, `claim "${name}": array indexing is not supported by the grammar`);
  if (name.split('.').some((s) => s.length === 0))
    throw invalid(path, `claim "${name}" has an empty dot-notation segment`);

  const ops = OPERATORS.filter((o) => m.has(o.toLowerCase()));
  if (ops.length !== 1)
    throw invalid(
      path,
      ops.length === 0
        ? `condition needs exactly one operator (${OPERATORS.join(', ')})`
        : `condition needs exactly one operator, found ${ops.join(' and ')}`,
    );
  const op = ops[0]!;
  const value = m.get(op.toLowerCase())!.value;
  if (!(typeof value === 'string' || typeof value === 'boolean' || typeof value === 'number'))
    throw invalid(
      path,
      `value of ${op} must be a string, number or boolean (the grammar allows no ${describe(value).replace(/^an? /, '')} values)`,
    );
  if (typeof value === 'number' && !Number.isFinite(value))
    throw invalid(path, `value of ${op} must be a finite number`);
  if (op === 'exists' && boolish(value) === undefined)
    throw invalid(path, `exists takes true or false, got ${describe(value)}`);
  if (ORDERING.has(op) && numeric(value) === undefined)
    throw invalid(path, `${op} compares numbers; ${describe(value)} is not a number`);
  return { kind: 'claim', claim: name, op, value, path };
}

function parseAuthority(raw: unknown, path: string, budget: Budget): AuthorityRule {
  if (!isPlainObject(raw)) throw invalid(path, `an authority entry must be an object, got ${describe(raw)}`);
  const m = members(raw, path);
  for (const { name } of m.values())
    if (!['authority', 'allof', 'anyof'].includes(name.toLowerCase()))
      throw invalid(path, `unknown member "${name}" in authority entry`);
  const authority = m.get('authority');
  if (!authority) throw invalid(path, 'authority entry needs an "authority" (the token issuer)');
  if (typeof authority.value !== 'string' || authority.value.trim().length === 0)
    throw invalid(path, `authority must be a non-empty string, got ${describe(authority.value)}`);
  const allOf = m.get('allof');
  const anyOf = m.get('anyof');
  if (allOf && anyOf) throw invalid(path, 'an authority cannot have both allOf and anyOf');
  if (!allOf && !anyOf) throw invalid(path, 'authority entry needs allOf or anyOf conditions');
  const combine: Combinator = allOf ? 'allOf' : 'anyOf';
  return {
    authority: authority.value,
    combine,
    conditions: parseConditionArray((allOf ?? anyOf)!.value, path, combine, 1, budget),
    path,
  };
}

/**
 * Validates a release policy (already JSON-parsed) and returns its typed form.
 * Throws MembraneError 'POLICY_INVALID' whose `where` is the JSON path of the problem.
 */
export function parseReleasePolicy(json: unknown): ReleasePolicy {
  if (!isPlainObject(json))
    throw invalid('', `a release policy must be a JSON object, got ${describe(json)}`);
  const m = members(json, '');
  for (const { name } of m.values())
    if (!['version', 'anyof', 'allof'].includes(name.toLowerCase()))
      throw invalid('', `unknown member "${name}" at the top level`);
  const version = m.get('version');
  if (!version) throw invalid('', `missing "version" (must be "${RELEASE_POLICY_VERSION}")`);
  if (version.value !== RELEASE_POLICY_VERSION)
    throw invalid(
      'version',
      `unsupported version ${describe(version.value)}; only "${RELEASE_POLICY_VERSION}" is defined`,
    );
  const allOf = m.get('allof');
  const anyOf = m.get('anyof');
  if (allOf && anyOf) throw invalid('', 'a policy cannot have both allOf and anyOf at the top level');
  if (!allOf && !anyOf) throw invalid('', 'a policy needs anyOf (or allOf) with at least one authority');
  const combine: Combinator = allOf ? 'allOf' : 'anyOf';
  const list = (allOf ?? anyOf)!.value;
  if (!Array.isArray(list))
    throw invalid(combine, `${combine} must be an array of authorities, got ${describe(list)}`);
  if (list.length === 0) throw invalid(combine, `${combine} must hold at least one authority`);
  const budget: Budget = { conditions: 0 };
  return {
    version: RELEASE_POLICY_VERSION,
    combine,
    authorities: list.map((a, i) => parseAuthority(a, `${combine}[${i}]`, budget)),
  };
}

/**
 * Accepts the forms a policy is found in: the policy object itself, Key Vault's encoded
 * form `{contentType, data: base64url(JSON)}` (REST `release_policy`), or the Azure CLI's
 * `{encodedPolicy}`; strings are JSON-parsed first.
 */
export function decodeReleasePolicy(input: unknown): ReleasePolicy {
  let v = input;
  if (typeof v === 'string') v = parseJson(v, '(root)');
  if (isPlainObject(v)) {
    const m = members(v, '');
    const enc = m.get('data') ?? m.get('encodedpolicy');
    if (enc && !m.has('version')) {
      if (typeof enc.value !== 'string') throw invalid(enc.name, 'encoded policy must be a base64url string');
      v = parseJson(Buffer.from(enc.value, 'base64url').toString('utf8'), enc.name);
    }
  }
  return parseReleasePolicy(v);
}

function parseJson(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new MembraneError('POLICY_INVALID', `invalid release policy: not JSON (${(e as Error).message})`, {
      where,
      cause: e,
    });
  }
}

/** Key Vault's wire encoding of a policy: `{contentType, data: base64url(JSON)}`. */
export function encodeReleasePolicy(policy: ReleasePolicy): { contentType: string; data: string } {
  return {
    contentType: 'application/json; charset=utf-8',
    data: Buffer.from(JSON.stringify(releasePolicyToJson(policy)), 'utf8').toString('base64url'),
  };
}

/** The policy back as plain JSON in the documented camelCase spelling. */
export function releasePolicyToJson(policy: ReleasePolicy): Record<string, unknown> {
  const cond = (c: Condition): Record<string, unknown> =>
    c.kind === 'claim' ? { claim: c.claim, [c.op]: c.value } : { [c.kind]: c.conditions.map(cond) };
  return {
    version: policy.version,
    [policy.combine]: policy.authorities.map((a) => ({
      authority: a.authority,
      [a.combine]: a.conditions.map(cond),
    })),
  };
}

// ---------------------------------------------------------------- evaluation

function boolish(v: unknown): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string') {
    const s = v.toLowerCase();
    if (s === 'true') return true;
    if (s === 'false') return false;
  }
  return undefined;
}

function numeric(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v === 'string' && NUMERIC.test(v)) return Number(v);
  return undefined;
}

/**
 * Follows dot notation through nested objects (own properties only, so names such as
 * `__proto__` or `constructor` never reach Object.prototype).
 */
export function resolveClaim(
  claims: Record<string, unknown>,
  claim: string,
): { found: boolean; value: unknown } {
  let cur: unknown = claims;
  for (const seg of claim.split('.')) {
    if (!isPlainObject(cur) || !Object.hasOwn(cur, seg)) return { found: false, value: undefined };
    cur = cur[seg];
  }
  return cur === null || cur === undefined ? { found: false, value: undefined } : { found: true, value: cur };
}

function scalarEquals(actual: string | number | boolean, expected: PolicyValue): boolean {
  if (typeof actual === 'string' && typeof expected === 'string') return actual === expected;
  if (typeof actual === 'boolean' || typeof expected === 'boolean') {
    const a = boolish(actual);
    const e = boolish(expected);
    return a !== undefined && e !== undefined && a === e;
  }
  // At least one side is a number: compare numerically when both read as numbers.
  const a = numeric(actual);
  const e = numeric(expected);
  return a !== undefined && e !== undefined && a === e;
}

function evalClaim(
  c: ClaimCondition,
  authority: string,
  claims: Record<string, unknown> | undefined,
): ConditionResult {
  const base = { authority, claim: c.claim, op: c.op, expected: c.value, path: c.path };
  if (!claims) return { ...base, actual: undefined, pass: false, reason: 'no token from this authority' };
  const { found, value } = resolveClaim(claims, c.claim);
  if (c.op === 'exists') {
    const want = boolish(c.value)!;
    return {
      ...base,
      actual: value,
      pass: found === want,
      ...(found === want ? {} : { reason: found ? 'claim is present' : 'claim is missing' }),
    };
  }
  if (!found) return { ...base, actual: undefined, pass: false, reason: 'claim is missing' };
  if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean')
    return {
      ...base,
      actual: value,
      pass: false,
      reason: `claim is ${Array.isArray(value) ? 'an array' : 'an object'}; only scalars compare`,
    };
  let pass: boolean;
  let reason: string | undefined;
  switch (c.op) {
    case 'equals':
      pass = scalarEquals(value, c.value);
      reason = 'value differs';
      break;
    case 'notEquals':
      pass = !scalarEquals(value, c.value);
      reason = 'value is equal';
      break;
    default: {
      const a = numeric(value);
      const e = numeric(c.value)!;
      if (a === undefined) {
        pass = false;
        reason = 'claim is not a number';
        break;
      }
      pass = c.op === 'less' ? a < e : c.op === 'lessOrEquals' ? a <= e : c.op === 'greater' ? a > e : a >= e;
      reason = 'comparison is false';
    }
  }
  return { ...base, actual: value, pass, ...(pass ? {} : { reason }) };
}

function evalCondition(
  c: Condition,
  authority: string,
  claims: Record<string, unknown> | undefined,
  out: ConditionResult[],
): VerdictNode {
  if (c.kind === 'claim') {
    const result = evalClaim(c, authority, claims);
    out.push(result);
    return { kind: 'claim', path: c.path, pass: result.pass, result };
  }
  const children = c.conditions.map((x) => evalCondition(x, authority, claims, out));
  const pass = c.kind === 'allOf' ? children.every((n) => n.pass) : children.some((n) => n.pass);
  return { kind: c.kind, path: c.path, pass, children };
}

/** Claims of the failing leaves that made `node` fail. */
function blame(node: VerdictNode, acc: string[]): void {
  if (node.pass) return;
  if (node.kind === 'claim') {
    if (node.result && !acc.includes(node.result.claim)) acc.push(node.result.claim);
    return;
  }
  for (const child of node.children ?? []) blame(child, acc);
}

/**
 * Evaluates every condition (no short-circuit, so an explanation shows all of them).
 * `claimsByAuthority` returns the claims of the verified token issued by that
 * authority, or undefined when there is none (see `claimsLookup`).
 */
export function evaluateReleasePolicy(
  policy: ReleasePolicy,
  claimsByAuthority: (authority: string) => Record<string, unknown> | undefined,
): PolicyVerdict {
  const results: ConditionResult[] = [];
  const authorities = policy.authorities.map((a): VerdictNode => {
    const claims = claimsByAuthority(a.authority);
    const children = a.conditions.map((c) => evalCondition(c, a.authority, claims, results));
    const pass =
      claims !== undefined &&
      (a.combine === 'allOf' ? children.every((n) => n.pass) : children.some((n) => n.pass));
    return {
      kind: 'authority',
      path: a.path,
      pass,
      combine: a.combine,
      authority: a.authority,
      tokenFound: claims !== undefined,
      children,
    };
  });
  const allowed =
    policy.combine === 'allOf' ? authorities.every((n) => n.pass) : authorities.some((n) => n.pass);
  const tree: VerdictNode = {
    kind: 'policy',
    path: '',
    pass: allowed,
    combine: policy.combine,
    children: authorities,
  };
  const failedClaims: string[] = [];
  if (!allowed) blame(tree, failedClaims);
  return { allowed, results, failedClaims, tree };
}

// ---------------------------------------------------------------- authorities

function normaliseAuthority(s: string): string {
  const t = s.trim();
  try {
    const u = new URL(t.includes('://') ? t : `https://${t}`);
    return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, '')}`;
  } catch {
    return t;
  }
}

/**
 * Whether a policy authority names the issuer `iss`. Scheme and host compare
 * case-insensitively, a trailing slash is ignored, and an authority written without a
 * scheme (as in the grammar's own example) means https.
 */
export function sameAuthority(authority: string, iss: string): boolean {
  return normaliseAuthority(authority) === normaliseAuthority(iss);
}

/** A lookup for evaluateReleasePolicy over a set of (already verified) token claim sets. */
export function claimsLookup(
  tokens: Record<string, unknown>[],
): (authority: string) => Record<string, unknown> | undefined {
  return (authority) => tokens.find((t) => typeof t.iss === 'string' && sameAuthority(authority, t.iss));
}

// ---------------------------------------------------------------- formatting

function show(v: unknown, max = 160): string {
  if (v === undefined) return '(missing)';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** A one-line description of a condition result: `claim op expected (actual ...)`. */
export function describeResult(r: ConditionResult): string {
  const head = `${r.claim} ${r.op} ${show(r.expected)}`;
  if (r.reason === 'no token from this authority') return `${head} — no token from this authority`;
  return `${head} — actual ${show(r.actual)}${r.pass ? '' : `: ${r.reason ?? 'failed'}`}`;
}

/**
 * Human-readable explanation: the evaluation tree with PASS/FAIL per node and the
 * final verdict. Pure: returns lines, the caller prints them.
 */
export function formatVerdict(verdict: PolicyVerdict): string {
  const lines: string[] = [];
  const mark = (pass: boolean) => (pass ? 'PASS' : 'FAIL');
  const walk = (n: VerdictNode, indent: string) => {
    switch (n.kind) {
      case 'policy':
        lines.push(
          `policy (${n.combine} of ${n.children?.length ?? 0} authorit${n.children?.length === 1 ? 'y' : 'ies'})`,
        );
        break;
      case 'authority':
        lines.push(
          `${indent}[${mark(n.pass)}] authority ${n.authority} (${n.combine})${n.tokenFound ? '' : ' — no token from this issuer'}  @${n.path}`,
        );
        break;
      case 'claim':
        lines.push(`${indent}[${mark(n.pass)}] ${describeResult(n.result!)}  @${n.path}`);
        break;
      default:
        lines.push(`${indent}[${mark(n.pass)}] ${n.kind}  @${n.path}`);
    }
    for (const c of n.children ?? []) walk(c, `${indent}  `);
  };
  walk(verdict.tree, '');
  lines.push(
    verdict.allowed
      ? 'verdict: ALLOWED — the release policy is satisfied'
      : `verdict: DENIED — release policy not satisfied${verdict.failedClaims.length ? `: claim${verdict.failedClaims.length > 1 ? 's' : ''} ${verdict.failedClaims.join(', ')}` : ''}`,
  );
  return lines.join('\n');
}
