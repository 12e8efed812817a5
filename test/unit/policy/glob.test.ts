/**
 * Linear-time globs (issue 12, defect 8): the semantics of the regex compiler they
 * replace, row for row, and no catastrophic backtracking on crafted names.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MembraneError } from '../../../policy/errors.js';
import { compileGlob, MAX_GLOB_ALTERNATIVES } from '../../../policy/glob.js';

/** The backtracking compiler the volume used before (kept here as the semantic oracle). */
function legacyRegex(pattern: string): RegExp {
  const special = /[\\^$.|+()]/;
  let re = '';
  let inBraces = false;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        if (pattern[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      let body = pattern.slice(i + 1, close);
      const negate = body.startsWith('!') || body.startsWith('^');
      if (negate) body = body.slice(1);
      body = body.replace(/[\\\]^]/g, (m) => `\\${m}`);
      re += negate ? `[^/${body}]` : `(?!/)[${body}]`;
      i = close;
    } else if (c === '{') {
      inBraces = true;
      re += '(?:';
    } else if (c === '}' && inBraces) {
      inBraces = false;
      re += ')';
    } else if (c === ',' && inBraces) re += '|';
    else re += special.test(c) || c === '{' || c === '}' || c === ']' ? `\\${c}` : c;
  }
  return new RegExp(`^${re}$`, 'u');
}

const PATTERNS = [
  '*.csv',
  'reports/*.csv',
  'reports/**',
  '**/*.csv',
  '**',
  '**/x',
  'a/**/b',
  'a**b',
  'out-?.txt',
  'out-[0-9].txt',
  'out-[!0-9].txt',
  'out-[^a-c].txt',
  'out-[]x].txt',
  'out-[!].txt',
  'out-[a-].txt',
  '*.{csv,json}',
  '{reports,logs}/**/*.{csv,tsv}',
  '{a,[,}]}x',
  'a.b',
  'a+b(1).txt',
  'x}y,z',
  'report',
  '*_*_*.csv',
  'é*/?',
];
const NAMES = [
  'a.csv',
  'dir/a.csv',
  'a.csv.exe',
  '.csv',
  'reports/q1.csv',
  'reports/2024/q1.csv',
  'reportsX/q1.csv',
  'q1.csv',
  'a/b/c/q1.csv',
  'a/b/c/q1.json',
  'x',
  'a/x',
  'a/b',
  'a/q/r/b',
  'ab',
  'aXYb',
  'a/Xb',
  'out-1.txt',
  'out-12.txt',
  'out-/.txt',
  'out-7.txt',
  'out-x.txt',
  'out-].txt',
  'out-!.txt',
  'out--.txt',
  'out-b.txt',
  'r.json',
  'r.xml',
  'logs/a/b.tsv',
  'logs/b.csv',
  'reports/b.txt',
  ',x',
  '[x',
  'x',
  '}x',
  'aXb',
  'a+b(1).txt',
  'x}y,z',
  'report',
  'report/x',
  'a_b_c.csv',
  'a_b.csv',
  'éa/😀',
  'é/xy',
  'line\nbreak.csv',
  'a/line\nbreak/b',
];

test('defect 12.8: globs keep the semantics of the regex compiler they replace', () => {
  for (const pattern of PATTERNS) {
    const glob = compileGlob(pattern);
    const legacy = legacyRegex(pattern);
    for (const name of NAMES) {
      assert.equal(
        glob.test(name),
        legacy.test(name),
        `${JSON.stringify(pattern)} vs ${JSON.stringify(name)}`,
      );
    }
  }
});

test('defect 12.8: a many-star glob against a 250-underscore name completes with the right answer', () => {
  const glob = compileGlob('**/*_*_*_*_*.csv');
  const underscores = '_'.repeat(250);
  assert.equal(glob.test(`${underscores}.csx`), false);
  assert.equal(glob.test(`d/${underscores}`), false);
  assert.equal(glob.test(`a/b/${underscores}.csv`), true);
  assert.equal(glob.test(`x_y_z_w_v.csv`), true);
  assert.equal(glob.test(`x_y_z_w.csv`), false);
  const deep = compileGlob('**/**/**/**/**/a');
  assert.equal(deep.test(`${'b/'.repeat(2000)}c`), false);
});

test('malformed globs are refused with GLOB_SYNTAX', () => {
  const tooMany = '{a,b,c,d}'.repeat(5); // 4^5 = 1024 alternatives
  for (const bad of ['', '/abs/*.csv', 'a[bc', '{a,b', '{a,{b}}', tooMany]) {
    assert.throws(
      () => compileGlob(bad),
      (e: unknown) => e instanceof MembraneError && e.code === 'GLOB_SYNTAX',
      bad,
    );
  }
  assert.ok(4 ** 5 > MAX_GLOB_ALTERNATIVES);
});
