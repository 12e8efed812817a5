/**
 * Issue rendering shared by every policy document Membrane validates (the clean-room spec,
 * the egress policy file): YAML/JSON reading with line numbers, zod issues turned into
 * `path: expected ..., got ...` sentences, "did you mean" suggestions for unknown fields
 * and enum values, and the one-issue-per-line list format. Pure: no I/O.
 *
 * Kept in one place so that every document speaks the same error language and a new
 * document type gets the same quality of messages for free.
 */
import { LineCounter, parseDocument } from 'yaml';
import { z } from 'zod';

export type IssuePath = Array<string | number>;

/** An issue before it is rendered: a structured path and a message. */
export interface RawIssue {
  path: IssuePath;
  message: string;
}

/** A rendered issue, as operators and tests see it. */
export interface Issue {
  /** e.g. `datasinks[0].protection.key`; `(root)` for the document itself. */
  path: string;
  /** `expected ..., got ...` */
  message: string;
  /** 1-based line in the source text, when known. */
  line?: number;
}

/** Decides whether the value at a path is a secret (never echoed back). */
export type SecretPathTest = (path: ReadonlyArray<PropertyKey>) => boolean;

export const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

export function fmtPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (typeof seg === 'string' && /^[A-Za-z_$][\w$]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out || '(root)';
}

/** The raw value at `path`, or undefined (own properties only: `__proto__` is just a key). */
export function at(root: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let cur = root;
  for (const seg of path) {
    if (Array.isArray(cur) && typeof seg === 'number') cur = cur[seg];
    else if (isObj(cur) && typeof seg === 'string') cur = Object.hasOwn(cur, seg) ? cur[seg] : undefined;
    else return undefined;
  }
  return cur;
}

const noSecrets: SecretPathTest = () => false;

/** What was found, in words, for the `got ...` half of a message. */
export function describe(
  v: unknown,
  path: ReadonlyArray<PropertyKey>,
  isSecretPath: SecretPathTest = noSecrets,
): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  // A secret-bearing field is described by its kind only, whatever its type: a token
  // written as a number or a list is still a token (issue 12, defect 15).
  if (isSecretPath(path)) return `${kindWord(v)} (value not shown)`;
  if (typeof v === 'string') {
    let shown = v;
    let note = '';
    if (/^[a-z][a-z0-9+.-]*:\/\//i.test(v)) {
      // A URL's user-info may carry a password and its query a SAS signature: show neither.
      const scheme = v.indexOf('://') + 3;
      const hostEnd = v.slice(scheme).search(/[/?#]/);
      const authority = hostEnd < 0 ? v.slice(scheme) : v.slice(scheme, scheme + hostEnd);
      const at = authority.lastIndexOf('@');
      if (at >= 0) shown = `${v.slice(0, scheme)}(user-info not shown)@${v.slice(scheme + at + 1)}`;
      const q = shown.search(/[?#]/);
      if (q >= 0) {
        shown = shown.slice(0, q);
        note = ' with a query (not shown)';
      }
    }
    const s = JSON.stringify(shown);
    return `${s.length > 70 ? `${s.slice(0, 66)}..."` : s}${note}`;
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return v.length === 0 ? 'an empty list' : `a list of ${v.length}`;
  if (isObj(v)) return 'a mapping';
  return typeof v;
}

function kindWord(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isObj(v)) return 'a mapping';
  return TYPE_WORDS[typeof v] ?? typeof v;
}

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  number: 'a number',
  boolean: 'true or false',
  integer: 'an integer',
};

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
  return d[a.length]![b.length]!;
}

export function suggestion(got: unknown, options: readonly string[]): string {
  // Long inputs are hostile or pasted by mistake: no quadratic work, no suggestion.
  if (typeof got !== 'string' || got.length > 64) return '';
  const best = options
    .map((o) => ({ o, d: editDistance(got.toLowerCase(), o.toLowerCase()) }))
    .sort((x, y) => x.d - y.d)[0];
  return best && best.d <= Math.max(1, Math.floor(best.o.length / 4)) ? ` (did you mean "${best.o}"?)` : '';
}

/** The keys a strict object accepts at `path` of `root` (following unions by the raw discriminator). */
function allowedKeysAt(root: z.ZodTypeAny, path: ReadonlyArray<PropertyKey>, raw: unknown): string[] {
  const unwrap = (t: z.ZodTypeAny, value: unknown): z.ZodTypeAny => {
    for (;;) {
      if (t instanceof z.ZodEffects) t = t.innerType();
      else if (t instanceof z.ZodDefault) t = t._def.innerType;
      else if (t instanceof z.ZodOptional || t instanceof z.ZodNullable) t = t.unwrap();
      else if (t instanceof z.ZodDiscriminatedUnion) {
        const d = isObj(value) ? value[t.discriminator] : undefined;
        const opt = t.optionsMap.get(d as string);
        if (!opt) return t;
        t = opt;
      } else return t;
    }
  };
  let t: z.ZodTypeAny = root;
  let value: unknown = raw;
  for (const seg of path) {
    t = unwrap(t, value);
    if (t instanceof z.ZodObject && typeof seg === 'string') t = t.shape[seg];
    else if (t instanceof z.ZodArray) t = t.element;
    else if (t instanceof z.ZodRecord) t = t.valueSchema;
    else return [];
    if (!t) return [];
    value = Array.isArray(value) || isObj(value) ? at(value, [seg]) : undefined;
  }
  t = unwrap(t, value);
  return t instanceof z.ZodObject ? Object.keys(t.shape) : [];
}

/**
 * One zod issue as `expected ..., got ...` sentences. `root` is the document's schema
 * (used to list the fields a strict object accepts).
 */
export function zodIssueText(
  issue: z.ZodIssue,
  raw: unknown,
  root: z.ZodTypeAny,
  isSecretPath: SecretPathTest = noSecrets,
): RawIssue[] {
  const got = at(raw, issue.path);
  const gotText = describe(got, issue.path, isSecretPath);
  switch (issue.code) {
    case 'unrecognized_keys': {
      const allowed = allowedKeysAt(root, issue.path, raw);
      return issue.keys.map((k) => ({
        path: [...issue.path, k],
        message: `unknown field${suggestion(k, allowed)}; expected one of: ${allowed.join(', ')}`,
      }));
    }
    case 'invalid_type': {
      if (issue.received === 'undefined')
        return [
          {
            path: issue.path,
            message: `expected ${TYPE_WORDS[issue.expected] ?? issue.expected} (required), got nothing`,
          },
        ];
      return [
        {
          path: issue.path,
          message: `expected ${TYPE_WORDS[issue.expected] ?? issue.expected}, got ${gotText}`,
        },
      ];
    }
    case 'invalid_literal':
      return [{ path: issue.path, message: `expected ${JSON.stringify(issue.expected)}, got ${gotText}` }];
    case 'invalid_enum_value':
    case 'invalid_union_discriminator': {
      const options = issue.options.map(String);
      const missing = got === undefined ? ' (required)' : '';
      return [
        {
          path: issue.path,
          message: `expected one of ${options.map((o) => JSON.stringify(o)).join(' | ')}${missing}, got ${gotText}${suggestion(got, options)}`,
        },
      ];
    }
    case 'too_small': {
      const what =
        issue.type === 'array'
          ? `at least ${issue.minimum} item${Number(issue.minimum) === 1 ? '' : 's'}`
          : issue.type === 'string'
            ? Number(issue.minimum) === 1
              ? 'a non-empty string'
              : `a string of at least ${issue.minimum} characters`
            : `a number ${issue.inclusive ? '>=' : '>'} ${issue.minimum}`;
      return [{ path: issue.path, message: `expected ${what}, got ${gotText}` }];
    }
    case 'too_big': {
      const what =
        issue.type === 'array'
          ? `at most ${issue.maximum} items`
          : issue.type === 'string'
            ? `a string of at most ${issue.maximum} characters`
            : `a number ${issue.inclusive ? '<=' : '<'} ${issue.maximum}`;
      return [{ path: issue.path, message: `expected ${what}, got ${gotText}` }];
    }
    default: {
      const msg = issue.message.startsWith('expected')
        ? issue.message
        : `expected a valid value (${issue.message})`;
      return [{ path: issue.path, message: msg.includes(', got ') ? msg : `${msg}, got ${gotText}` }];
    }
  }
}

/** A YAML (1.2) or JSON document read into plain data, with a way back to source lines. */
export type ReadDocument =
  | { ok: true; raw: unknown; lineOf: (path: IssuePath) => number | undefined }
  | { ok: false; issues: Issue[] };

/**
 * Reads YAML or JSON text (JSON is parsed by the YAML parser too, so duplicate keys are
 * errors in both). Never throws.
 */
export function readDocument(text: string): ReadDocument {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, merge: false, prettyErrors: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        return {
          path: '(document)',
          message: `expected valid YAML or JSON: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`,
          ...(pos ? { line: pos.line } : {}),
        };
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    return {
      ok: false,
      issues: [{ path: '(document)', message: `expected a plain YAML document: ${(e as Error).message}` }],
    };
  }
  const lineOf = (path: IssuePath): number | undefined => {
    for (let n = path.length; n >= 0; n--) {
      const node = doc.getIn(path.slice(0, n), true) as { range?: [number, number, number] } | undefined;
      if (node?.range) return lineCounter.linePos(node.range[0]).line;
    }
    return undefined;
  };
  return { ok: true, raw, lineOf };
}

/** Raw issues rendered with their lines, in source order (stable for equal lines). */
export function renderIssues(raw: RawIssue[], lineOf: (path: IssuePath) => number | undefined): Issue[] {
  const issues = raw.map((i) => {
    const line = lineOf(i.path);
    return { path: fmtPath(i.path), message: i.message, ...(line !== undefined ? { line } : {}) };
  });
  issues.sort((a, b) => (a.line ?? Number.MAX_SAFE_INTEGER) - (b.line ?? Number.MAX_SAFE_INTEGER));
  return issues;
}

/** One issue per line: `  - path: message [line N]`. */
export function formatIssues(issues: readonly Issue[]): string {
  return issues
    .map((i) => `  - ${i.path}: ${i.message}${i.line !== undefined ? ` [line ${i.line}]` : ''}`)
    .join('\n');
}
