import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMembraneError } from '../../policy/errors.js';
import {
  claimsLookup,
  decodeReleasePolicy,
  encodeReleasePolicy,
  evaluateReleasePolicy,
  formatVerdict,
  parseReleasePolicy,
  releasePolicyToJson,
  sameAuthority,
} from '../../policy/release-policy.js';

const MAA = 'https://sharedeus2.eus2.attest.azure.net';
const HOSTDATA = 'a'.repeat(64);

/** Claims as MAA issues them for a confidential container (abridged). */
const claims = {
  iss: MAA,
  'x-ms-attestation-type': 'sevsnpvm',
  'x-ms-compliance-status': 'azure-compliant-uvm',
  'x-ms-sevsnpvm-hostdata': HOSTDATA,
  'x-ms-sevsnpvm-is-debuggable': false,
  'x-ms-sevsnpvm-guestsvn': 2,
  'x-ms-sevsnpvm-vmpl': 0,
  'x-ms-ver': '1.0',
  'x-ms-runtime': { keys: [{ kid: 'k1', kty: 'RSA' }], 'client-payload': { nonce: '42' } },
  'x-ms-sevsnpvm-reportdata': null,
};

const one = (cond: Record<string, unknown>, authority = MAA) => ({
  version: '1.0.0',
  anyOf: [{ authority, allOf: [cond] }],
});

const evalOne = (cond: Record<string, unknown>, c: Record<string, unknown> = claims) =>
  evaluateReleasePolicy(parseReleasePolicy(one(cond)), claimsLookup([c]));

// ---------------------------------------------------------------- single conditions

const conditionCases: Array<[string, Record<string, unknown>, boolean]> = [
  ['string equals', { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' }, true],
  ['string equals is case-sensitive', { claim: 'x-ms-attestation-type', equals: 'SEVSNPVM' }, false],
  ['string equals mismatch', { claim: 'x-ms-sevsnpvm-hostdata', equals: 'b'.repeat(64) }, false],
  [
    'policy "false" matches boolean claim false',
    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' },
    true,
  ],
  [
    'policy "False" matches (bool.Parse is case-insensitive)',
    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'False' },
    true,
  ],
  [
    'policy "true" does not match claim false',
    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'true' },
    false,
  ],
  ['policy boolean false matches claim false', { claim: 'x-ms-sevsnpvm-is-debuggable', equals: false }, true],
  ['policy "0" does not match boolean false', { claim: 'x-ms-sevsnpvm-is-debuggable', equals: '0' }, false],
  ['policy "2" matches number claim 2', { claim: 'x-ms-sevsnpvm-guestsvn', equals: '2' }, true],
  ['policy "2.0" matches number claim 2', { claim: 'x-ms-sevsnpvm-guestsvn', equals: '2.0' }, true],
  ['policy 2 matches number claim 2', { claim: 'x-ms-sevsnpvm-guestsvn', equals: 2 }, true],
  ['policy "02" is not a JSON number', { claim: 'x-ms-sevsnpvm-guestsvn', equals: '02' }, false],
  ['policy number 1 matches string claim "1.0"', { claim: 'x-ms-ver', equals: 1 }, true],
  ['notEquals on different value', { claim: 'x-ms-sevsnpvm-vmpl', notEquals: 1 }, true],
  ['notEquals on equal value', { claim: 'x-ms-sevsnpvm-vmpl', notEquals: '0' }, false],
  ['notEquals on a missing claim fails', { claim: 'nope', notEquals: 'x' }, false],
  ['less', { claim: 'x-ms-sevsnpvm-guestsvn', less: 3 }, true],
  ['less (equal) fails', { claim: 'x-ms-sevsnpvm-guestsvn', less: 2 }, false],
  ['lessOrEquals', { claim: 'x-ms-sevsnpvm-guestsvn', lessOrEquals: '2' }, true],
  ['greater', { claim: 'x-ms-sevsnpvm-guestsvn', greater: 1 }, true],
  ['greater fails', { claim: 'x-ms-sevsnpvm-guestsvn', greater: 2 }, false],
  ['greaterOrEquals', { claim: 'x-ms-sevsnpvm-guestsvn', greaterOrEquals: 2 }, true],
  ['ordering on a non-numeric claim fails', { claim: 'x-ms-attestation-type', greater: 1 }, false],
  ['ordering on a numeric-string claim', { claim: 'x-ms-ver', greaterOrEquals: 1 }, true],
  ['exists true on present claim', { claim: 'x-ms-runtime', exists: true }, true],
  ['exists true on missing claim', { claim: 'x-ms-missing', exists: true }, false],
  ['exists false on missing claim passes', { claim: 'x-ms-missing', exists: false }, true],
  ['exists false on present claim fails', { claim: 'x-ms-attestation-type', exists: 'false' }, false],
  ['null claim counts as missing', { claim: 'x-ms-sevsnpvm-reportdata', exists: true }, false],
  ['missing claim fails equals', { claim: 'x-ms-nothing', equals: 'x' }, false],
  ['dot notation into nested claims', { claim: 'x-ms-runtime.client-payload.nonce', equals: '42' }, true],
  ['dot notation: nested array exists', { claim: 'x-ms-runtime.keys', exists: true }, true],
  ['dot notation: object claim cannot equal a scalar', { claim: 'x-ms-runtime', equals: 'x' }, false],
  ['dot notation: array claim cannot equal a scalar', { claim: 'x-ms-runtime.keys', equals: 'k1' }, false],
  [
    'dot notation through a scalar is missing',
    { claim: 'x-ms-attestation-type.length', exists: true },
    false,
  ],
  ['prototype names never resolve', { claim: 'constructor', exists: true }, false],
  ['__proto__ never resolves', { claim: '__proto__', exists: true }, false],
];

for (const [name, cond, expected] of conditionCases) {
  test(`condition: ${name}`, () => {
    const v = evalOne(cond);
    assert.equal(v.allowed, expected);
    assert.equal(v.results.length, 1);
    assert.equal(v.results[0]!.pass, expected);
    assert.deepEqual(v.failedClaims, expected ? [] : [cond.claim]);
  });
}

// ---------------------------------------------------------------- structure

const structureCases: Array<[string, unknown, boolean, string[]]> = [
  [
    'authority allOf: one failure denies',
    {
      version: '1.0.0',
      anyOf: [
        {
          authority: MAA,
          allOf: [
            { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
            { claim: 'x-ms-sevsnpvm-hostdata', equals: 'b'.repeat(64) },
          ],
        },
      ],
    },
    false,
    ['x-ms-sevsnpvm-hostdata'],
  ],
  [
    'authority anyOf: one success allows',
    {
      version: '1.0.0',
      anyOf: [
        {
          authority: MAA,
          anyOf: [
            { claim: 'x-ms-sevsnpvm-hostdata', equals: 'b'.repeat(64) },
            { claim: 'x-ms-sevsnpvm-hostdata', equals: HOSTDATA },
          ],
        },
      ],
    },
    true,
    [],
  ],
  [
    'nested anyOf inside allOf',
    {
      version: '1.0.0',
      anyOf: [
        {
          authority: MAA,
          allOf: [
            { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
            {
              anyOf: [
                { claim: 'x-ms-sevsnpvm-guestsvn', equals: 9 },
                {
                  allOf: [
                    { claim: 'x-ms-sevsnpvm-vmpl', equals: 0 },
                    { claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' },
                  ],
                },
              ],
            },
          ],
        },
      ],
    },
    true,
    [],
  ],
  [
    'nested anyOf all failing names every failing claim',
    {
      version: '1.0.0',
      anyOf: [
        {
          authority: MAA,
          allOf: [
            { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
            {
              anyOf: [
                { claim: 'x-ms-sevsnpvm-guestsvn', equals: 9 },
                { claim: 'x-ms-sevsnpvm-vmpl', equals: 3 },
              ],
            },
          ],
        },
      ],
    },
    false,
    ['x-ms-sevsnpvm-guestsvn', 'x-ms-sevsnpvm-vmpl'],
  ],
  [
    'unknown authority: no token, denied',
    one({ claim: 'x-ms-attestation-type', equals: 'sevsnpvm' }, 'https://other.attest.azure.net'),
    false,
    ['x-ms-attestation-type'],
  ],
  [
    'top-level anyOf over two authorities: second matches',
    {
      version: '1.0.0',
      anyOf: [
        {
          authority: 'https://other.attest.azure.net',
          allOf: [{ claim: 'x-ms-attestation-type', equals: 'sevsnpvm' }],
        },
        { authority: MAA, allOf: [{ claim: 'x-ms-attestation-type', equals: 'sevsnpvm' }] },
      ],
    },
    true,
    [],
  ],
  [
    'top-level allOf over two authorities: one missing denies',
    {
      version: '1.0.0',
      allOf: [
        { authority: 'https://other.attest.azure.net', allOf: [{ claim: 'x-ms-ver', exists: true }] },
        { authority: MAA, allOf: [{ claim: 'x-ms-attestation-type', equals: 'sevsnpvm' }] },
      ],
    },
    false,
    ['x-ms-ver'],
  ],
  [
    'authority without scheme and with trailing slash matches the issuer',
    one({ claim: 'x-ms-attestation-type', equals: 'sevsnpvm' }, 'SharedEUS2.eus2.attest.azure.net/'),
    true,
    [],
  ],
  [
    'member names are case-insensitive (EBNF spells anyof/allof)',
    { Version: '1.0.0', anyof: [{ Authority: MAA, allof: [{ Claim: 'x-ms-ver', Equals: '1.0' }] }] },
    true,
    [],
  ],
];

for (const [name, policy, allowed, failed] of structureCases) {
  test(`structure: ${name}`, () => {
    const v = evaluateReleasePolicy(parseReleasePolicy(policy), claimsLookup([claims]));
    assert.equal(v.allowed, allowed);
    assert.deepEqual(v.failedClaims, failed);
  });
}

// ---------------------------------------------------------------- malformed policies

const malformed: Array<[string, unknown, string, RegExp]> = [
  ['not an object', [1, 2], '(root)', /must be a JSON object, got an array/],
  ['missing version', { anyOf: [] }, '(root)', /missing "version"/],
  ['wrong version', { version: '2.0.0', anyOf: [] }, 'version', /unsupported version string "2.0.0"/],
  ['numeric version', { version: 1, anyOf: [] }, 'version', /unsupported version number 1/],
  ['neither anyOf nor allOf', { version: '1.0.0' }, '(root)', /needs anyOf \(or allOf\)/],
  ['both anyOf and allOf', { version: '1.0.0', anyOf: [], allOf: [] }, '(root)', /both allOf and anyOf/],
  [
    'unknown top-level member',
    { version: '1.0.0', anyOf: [], effect: 'allow' },
    '(root)',
    /unknown member "effect"/,
  ],
  ['empty authority list', { version: '1.0.0', anyOf: [] }, 'anyOf', /at least one authority/],
  [
    'authority list not an array',
    { version: '1.0.0', anyOf: {} },
    'anyOf',
    /must be an array of authorities/,
  ],
  [
    'authority entry not an object',
    { version: '1.0.0', anyOf: ['x'] },
    'anyOf[0]',
    /must be an object, got string/,
  ],
  [
    'authority missing',
    { version: '1.0.0', anyOf: [{ allOf: [{ claim: 'a', equals: 1 }] }] },
    'anyOf[0]',
    /needs an "authority"/,
  ],
  [
    'authority empty',
    { version: '1.0.0', anyOf: [{ authority: ' ', allOf: [{ claim: 'a', equals: 1 }] }] },
    'anyOf[0]',
    /non-empty string/,
  ],
  [
    'authority with both allOf and anyOf',
    { version: '1.0.0', anyOf: [{ authority: MAA, allOf: [], anyOf: [] }] },
    'anyOf[0]',
    /cannot have both allOf and anyOf/,
  ],
  [
    'authority without conditions',
    { version: '1.0.0', anyOf: [{ authority: MAA }] },
    'anyOf[0]',
    /needs allOf or anyOf/,
  ],
  [
    'authority with empty allOf',
    { version: '1.0.0', anyOf: [{ authority: MAA, allOf: [] }] },
    'anyOf[0].allOf',
    /at least one condition/,
  ],
  [
    'condition with no operator',
    one({ claim: 'a' }),
    'anyOf[0].allOf[0]',
    /condition needs exactly one operator \(equals/,
  ],
  [
    'condition with two operators',
    one({ claim: 'a', equals: 1, exists: true }),
    'anyOf[0].allOf[0]',
    /exactly one operator, found equals and exists/,
  ],
  ['condition without claim', one({ equals: 1 }), 'anyOf[0].allOf[0]', /needs a "claim"/],
  [
    'claim not a string',
    one({ claim: 5, equals: 1 }),
    'anyOf[0].allOf[0]',
    /claim must be a non-empty string/,
  ],
  [
    'claim with array index',
    one({ claim: 'x-ms-runtime.keys[0]', exists: true }),
    'anyOf[0].allOf[0]',
    /array indexing is not supported/,
  ],
  [
    'claim with empty segment',
    one({ claim: 'a..b', exists: true }),
    'anyOf[0].allOf[0]',
    /empty dot-notation segment/,
  ],
  [
    'object value',
    one({ claim: 'a', equals: { x: 1 } }),
    'anyOf[0].allOf[0]',
    /must be a string, number or boolean/,
  ],
  ['array value', one({ claim: 'a', equals: ['x'] }), 'anyOf[0].allOf[0]', /no array values/],
  ['null value', one({ claim: 'a', equals: null }), 'anyOf[0].allOf[0]', /no null values/],
  [
    'exists with a string',
    one({ claim: 'a', exists: 'yes' }),
    'anyOf[0].allOf[0]',
    /exists takes true or false/,
  ],
  ['less with a non-number', one({ claim: 'a', less: 'abc' }), 'anyOf[0].allOf[0]', /less compares numbers/],
  ['unknown operator', one({ claim: 'a', contains: 'x' }), 'anyOf[0].allOf[0]', /unknown member "contains"/],
  [
    'claim mixed with allOf',
    one({ claim: 'a', allOf: [{ claim: 'b', exists: true }] }),
    'anyOf[0].allOf[0]',
    /cannot also have a claim/,
  ],
  ['group with both combinators', one({ allOf: [], anyOf: [] }), 'anyOf[0].allOf[0]', /both allOf and anyOf/],
  ['nested empty anyOf', one({ anyOf: [] }), 'anyOf[0].allOf[0].anyOf', /at least one condition/],
  [
    'deep malformed path',
    one({ anyOf: [{ claim: 'a', equals: 1 }, { allOf: [{ claim: 'b', equals: 1 }, { claim: 'c' }] }] }),
    'anyOf[0].allOf[0].anyOf[1].allOf[1]',
    /exactly one operator/,
  ],
  [
    'duplicate member by case',
    { version: '1.0.0', anyOf: [{ authority: MAA, allOf: [{ claim: 'a', equals: 1, Equals: 2 }] }] },
    'anyOf[0].allOf[0]',
    /duplicate member "equals" \/ "Equals"/,
  ],
  [
    'non-finite number',
    one({ claim: 'a', equals: Number.POSITIVE_INFINITY }),
    'anyOf[0].allOf[0]',
    /finite number/,
  ],
];

for (const [name, policy, where, message] of malformed) {
  test(`malformed: ${name}`, () => {
    assert.throws(
      () => parseReleasePolicy(policy),
      (e: unknown) => {
        assert.ok(isMembraneError(e, 'POLICY_INVALID'), `wrong error: ${String(e)}`);
        assert.equal(e.where, where);
        assert.match(e.message, message);
        assert.match(e.message, /\(at /);
        return true;
      },
    );
  });
}

test('malformed: nesting deeper than the limit is refused', () => {
  let cond: Record<string, unknown> = { claim: 'a', exists: true };
  for (let i = 0; i < 40; i++) cond = { allOf: [cond] };
  assert.throws(() => parseReleasePolicy(one(cond)), /nested deeper than 32/);
});

// ---------------------------------------------------------------- helpers

test('every condition is evaluated (no short-circuit) and results carry paths', () => {
  const v = evaluateReleasePolicy(
    parseReleasePolicy({
      version: '1.0.0',
      anyOf: [
        {
          authority: MAA,
          anyOf: [
            { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
            { claim: 'x-ms-sevsnpvm-vmpl', equals: 0 },
          ],
        },
      ],
    }),
    claimsLookup([claims]),
  );
  assert.equal(v.results.length, 2);
  assert.deepEqual(
    v.results.map((r) => [r.path, r.actual, r.pass]),
    [
      ['anyOf[0].anyOf[0]', 'sevsnpvm', true],
      ['anyOf[0].anyOf[1]', 0, true],
    ],
  );
});

test('sameAuthority', () => {
  assert.ok(sameAuthority('https://X.attest.azure.net/', 'https://x.attest.azure.net'));
  assert.ok(sameAuthority('x.attest.azure.net', 'https://x.attest.azure.net'));
  assert.ok(!sameAuthority('http://x.attest.azure.net', 'https://x.attest.azure.net'));
  assert.ok(!sameAuthority('https://x.attest.azure.net.evil.com', 'https://x.attest.azure.net'));
  assert.ok(sameAuthority('http://127.0.0.1:8443', 'http://127.0.0.1:8443/'));
  assert.ok(!sameAuthority('http://127.0.0.1:8443', 'http://127.0.0.1:8444'));
});

test('Key Vault encoding round-trips and decodeReleasePolicy reads every form', () => {
  const p = parseReleasePolicy(one({ claim: 'x-ms-sevsnpvm-is-debuggable', equals: 'false' }));
  const enc = encodeReleasePolicy(p);
  assert.equal(enc.contentType, 'application/json; charset=utf-8');
  assert.deepEqual(decodeReleasePolicy(enc), p);
  assert.deepEqual(decodeReleasePolicy({ encodedPolicy: enc.data, immutable: false }), p);
  assert.deepEqual(decodeReleasePolicy(JSON.stringify(releasePolicyToJson(p))), p);
  assert.throws(
    () => decodeReleasePolicy('{not json'),
    (e: unknown) => isMembraneError(e, 'POLICY_INVALID'),
  );
});

test('formatVerdict shows each condition, expected vs actual, and the verdict', () => {
  const v = evaluateReleasePolicy(
    parseReleasePolicy({
      version: '1.0.0',
      anyOf: [
        {
          authority: MAA,
          allOf: [
            { claim: 'x-ms-attestation-type', equals: 'sevsnpvm' },
            { claim: 'x-ms-sevsnpvm-hostdata', equals: 'b'.repeat(64) },
          ],
        },
      ],
    }),
    claimsLookup([claims]),
  );
  const text = formatVerdict(v);
  assert.match(text, /\[FAIL\] authority https:\/\/sharedeus2\.eus2\.attest\.azure\.net \(allOf\)/);
  assert.match(text, /\[PASS\] x-ms-attestation-type equals "sevsnpvm" — actual "sevsnpvm"/);
  assert.match(text, /\[FAIL\] x-ms-sevsnpvm-hostdata equals "b{64}" — actual "a{64}": value differs/);
  assert.match(text, /verdict: DENIED — release policy not satisfied: claim x-ms-sevsnpvm-hostdata$/);
});
