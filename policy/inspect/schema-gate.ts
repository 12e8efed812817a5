/**
 * The JSON-schema gate of open mode (ajv). Validation needs the whole document, so this is the one
 * place a body is buffered — and only up to the rule's body limit: past it the body is refused
 * unseen rather than passed unchecked. Refusals name the failing place in the *schema* (which the
 * policy author wrote) and the keyword, never the instance path or a value: keys and values are the
 * app's data and must not be echoed into headers or logs.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import { InspectErrorCode, inspectError } from './types.js';

export type SchemaRefusalReason = 'not-json' | 'over-cap' | 'invalid-json' | 'schema';

export interface SchemaRefusal {
  readonly reason: SchemaRefusalReason;
  /** One sentence for Membrane-Reason and the decision log; contains no body bytes. */
  readonly message: string;
  /** JSON pointer into the schema of the keyword that failed (reason 'schema' only). */
  readonly schemaPath?: string;
}

/** One body's check: feed it the chunks, then end(). */
export interface SchemaCheck {
  push(chunk: Uint8Array): SchemaRefusal | undefined;
  end(): SchemaRefusal | undefined;
  /** Bytes held so far (never more than the cap). */
  readonly buffered: number;
}

/** A compiled rule schema: compile once per rule, then one check per request body. */
export interface SchemaGate {
  readonly maxBytes: number;
  check(contentType: string | undefined): SchemaCheck;
}

/** `application/json` and `application/<anything>+json`, parameters and case ignored. */
export function isJsonContentType(contentType: string | undefined): boolean {
  const t = (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
  return t === 'application/json' || (t.startsWith('application/') && t.endsWith('+json'));
}

/**
 * Compiles `schema` (ajv strict mode: an unknown keyword or format is an error at policy load,
 * not a silently skipped check). One Ajv instance per schema, so `$id`s of different rules never
 * collide and no rule can `$ref` another's schema. Throws INSPECT_SCHEMA_INVALID naming `where`.
 */
export function compileSchemaGate(
  schema: Readonly<Record<string, unknown>>,
  maxBytes: number,
  where = 'inspect.schema',
): SchemaGate {
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0)
    throw inspectError(
      InspectErrorCode.USAGE,
      `the schema gate needs a positive body limit, got ${maxBytes}`,
      where,
    );
  let validate: ValidateFunction;
  try {
    validate = new Ajv({ strict: true, allErrors: false }).compile(schema);
  } catch (e) {
    throw inspectError(
      InspectErrorCode.SCHEMA_INVALID,
      `the JSON schema does not compile: ${e instanceof Error ? e.message : String(e)}`,
      where,
      e,
    );
  }
  return {
    maxBytes,
    check: (contentType) => new BodyCheck(validate, maxBytes, isJsonContentType(contentType)),
  };
}

class BodyCheck implements SchemaCheck {
  private chunks: Uint8Array[] = [];
  private size = 0;
  private refused: SchemaRefusal | undefined;
  private done = false;

  constructor(
    private readonly validate: ValidateFunction,
    private readonly maxBytes: number,
    private readonly json: boolean,
  ) {}

  get buffered(): number {
    return this.size;
  }

  push(chunk: Uint8Array): SchemaRefusal | undefined {
    if (this.done) throw inspectError(InspectErrorCode.USAGE, 'push() after end()');
    if (this.refused || chunk.length === 0) return this.refused;
    if (!this.json)
      return this.refuse({
        reason: 'not-json',
        message: 'the rule requires a JSON body (application/json) that satisfies its schema',
      });
    if (this.size + chunk.length > this.maxBytes)
      return this.refuse({
        reason: 'over-cap',
        message: `the JSON body exceeds the rule's ${this.maxBytes}-byte limit for schema validation`,
      });
    this.chunks.push(chunk);
    this.size += chunk.length;
    return undefined;
  }

  end(): SchemaRefusal | undefined {
    if (this.done) return this.refused;
    this.done = true;
    if (this.refused || this.size === 0) return this.refused; // no body: nothing leaves, nothing to check
    const bytes = Buffer.concat(this.chunks, this.size);
    this.chunks = [];
    let doc: unknown;
    try {
      doc = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes));
    } catch {
      return this.refuse({ reason: 'invalid-json', message: 'the body is not valid UTF-8 JSON' });
    }
    if (this.validate(doc)) return undefined;
    const err = this.validate.errors?.[0];
    const schemaPath = err?.schemaPath ?? '#';
    return this.refuse({
      reason: 'schema',
      message: `the JSON body does not satisfy the rule's schema at ${schemaPath} (${err?.keyword ?? 'unknown'})`,
      schemaPath,
    });
  }

  private refuse(r: SchemaRefusal): SchemaRefusal {
    this.refused = r;
    this.chunks = [];
    this.size = 0;
    return r;
  }
}
