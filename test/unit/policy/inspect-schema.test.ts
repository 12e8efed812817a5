import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isMembraneError } from '../../../policy/errors.js';
import {
  compileSchemaGate,
  isJsonContentType,
  type SchemaRefusalReason,
} from '../../../policy/inspect/index.js';

const schema = {
  type: 'object',
  required: ['count', 'region'],
  additionalProperties: false,
  properties: {
    count: { type: 'integer', minimum: 0 },
    region: { enum: ['eu', 'us'] },
  },
};
const gate = compileSchemaGate(schema, 64);
const JSON_CT = 'application/json; charset=utf-8';

/** [what, content type, body chunks, refusal reason or undefined, schema path]. */
const cases: ReadonlyArray<
  readonly [string, string | undefined, string[], SchemaRefusalReason | undefined, string?]
> = [
  ['a conforming document', JSON_CT, ['{"count": 3, "region": "eu"}'], undefined],
  [
    'a conforming document in several chunks',
    'application/json',
    ['{"cou', 'nt": 3, "reg', 'ion": "us"}'],
    undefined,
  ],
  ['a conforming document as +json', 'application/vnd.api+json', ['{"count":0,"region":"us"}'], undefined],
  ['an empty body', 'text/plain', [], undefined],
  ['a wrong type', JSON_CT, ['{"count": "3", "region": "eu"}'], 'schema', '#/properties/count/type'],
  [
    'a value outside the enum',
    JSON_CT,
    ['{"count": 3, "region": "apac"}'],
    'schema',
    '#/properties/region/enum',
  ],
  [
    'an extra property',
    JSON_CT,
    ['{"count": 3, "region": "eu", "ssn": "x"}'],
    'schema',
    '#/additionalProperties',
  ],
  ['a missing property', JSON_CT, ['{"count": 3}'], 'schema', '#/required'],
  ['malformed JSON', JSON_CT, ['{"count": 3,'], 'invalid-json'],
  ['invalid UTF-8', JSON_CT, ['{"count": 3, "region": "\xff"}'], 'invalid-json'],
  [
    'a body over the cap',
    JSON_CT,
    ['{"count": 3, "region": "eu", "pad": "', 'x'.repeat(64), '"}'],
    'over-cap',
  ],
  ['a non-JSON body', 'text/plain', ['count=3'], 'not-json'],
  ['a body without a content type', undefined, ['{"count": 3, "region": "eu"}'], 'not-json'],
];

describe('JSON-schema gate', () => {
  for (const [what, ct, chunks, reason, schemaPath] of cases) {
    test(`${reason ? `refuses (${reason})` : 'passes'} ${what}`, () => {
      const check = gate.check(ct);
      let refusal = undefined as ReturnType<typeof check.end>;
      for (const c of chunks) refusal ??= check.push(Buffer.from(c, c.includes('\xff') ? 'latin1' : 'utf8'));
      refusal ??= check.end();
      assert.equal(refusal?.reason, reason);
      if (schemaPath) assert.equal(refusal?.schemaPath, schemaPath);
      assert.ok(check.buffered <= gate.maxBytes);
    });
  }

  test('refusal messages name the schema place, never a body value or key', () => {
    const check = gate.check(JSON_CT);
    check.push(Buffer.from('{"count": 3, "region": "eu", "john@example.com": "4111111111111111"}'));
    const r = check.end();
    assert.equal(r?.reason, 'over-cap');
    const c2 = gate.check(JSON_CT);
    c2.push(Buffer.from('{"count": 3, "region": "eu", "secretkey": 1}'));
    const r2 = c2.end();
    assert.equal(r2?.reason, 'schema');
    assert.doesNotMatch(r2?.message ?? '', /secretkey/);
    assert.match(r2?.message ?? '', /#\/additionalProperties/);
  });

  test('stops buffering as soon as the body passes the cap', () => {
    const check = gate.check(JSON_CT);
    assert.equal(check.push(Buffer.alloc(60, 0x20)), undefined);
    assert.equal(check.push(Buffer.alloc(10, 0x20))?.reason, 'over-cap');
    assert.equal(check.buffered, 0);
    assert.equal(check.push(Buffer.alloc(10, 0x20))?.reason, 'over-cap');
  });

  test('a schema that does not compile is refused at load with a typed error', () => {
    for (const bad of [
      { type: 'objekt' },
      { type: 'string', format: 'email' },
      { properties: { a: { tipe: 1 } } },
    ]) {
      assert.throws(
        () => compileSchemaGate(bad, 1024, 'allow[2].inspect.schema'),
        (e) => isMembraneError(e, 'INSPECT_SCHEMA_INVALID') && e.where === 'allow[2].inspect.schema',
      );
    }
  });

  test('a non-positive cap is a usage error', () => {
    assert.throws(
      () => compileSchemaGate(schema, 0),
      (e) => isMembraneError(e, 'INSPECT_USAGE'),
    );
  });

  test('recognises JSON content types', () => {
    for (const [ct, json] of [
      ['application/json', true],
      ['Application/JSON; charset=utf-8', true],
      ['application/problem+json', true],
      ['text/json', false],
      ['application/x-www-form-urlencoded', false],
      [undefined, false],
    ] as const)
      assert.equal(isJsonContentType(ct), json, String(ct));
  });
});
