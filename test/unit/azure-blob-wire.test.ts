/**
 * The azure-blob wire pieces that Azurite does not exercise on its own: List
 * Blobs shapes it never produces (Encoded names, HNS directories), the parser's
 * refusal of malformed answers, Shared Key canonicalization rules, and SAS
 * string-to-sign layouts (checked against an independent HMAC).
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { test } from 'node:test';
import { accountSas, containerSas } from '../../proxies/blob-volume/store/azure-sas.js';
import {
  canonicalizedHeaders,
  canonicalizedResource,
  sharedKeySigner,
  stringToSign,
} from '../../proxies/blob-volume/store/azure-sharedkey.js';
import { encodeBlobName } from '../../proxies/blob-volume/store/azure-transport.js';
import {
  blockListXml,
  parseError,
  parseListBlobs,
  XmlShapeError,
} from '../../proxies/blob-volume/store/azure-xml.js';

const KEY = Buffer.alloc(32, 7).toString('base64');

const blob = (name: string, props: string, nameAttrs = '') =>
  `<Blob><Name${nameAttrs}>${name}</Name><Properties>${props}</Properties></Blob>`;
const props = (len: number, extra = '') =>
  `<Last-Modified>Tue, 01 Oct 2024 10:00:00 GMT</Last-Modified><Etag>0x8DC</Etag><Content-Length>${len}</Content-Length>${extra}`;

test('List Blobs: entities, Encoded names, directories skipped, NextMarker', () => {
  const xml =
    '<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://a.blob.core.windows.net/" ContainerName="c">' +
    '<Prefix>p/</Prefix><MaxResults>2</MaxResults><Blobs>' +
    blob('p/a&amp;b &lt;c&gt; &#x1F642;&#65;', props(3)) +
    blob('p/ctl%01char', props(4), ' Encoded="true"') +
    blob('p/dir', props(0, '<ResourceType>directory</ResourceType>')) +
    '</Blobs><NextMarker>2!12!cC9j&amp;</NextMarker></EnumerationResults>';
  const page = parseListBlobs(xml);
  assert.deepEqual(
    page.blobs.map((b) => [b.name, b.size, b.etag]),
    [
      ['p/a&b <c> 🙂A', 3, '"0x8DC"'],
      ['p/ctl\u0001char', 4, '"0x8DC"'],
    ],
  );
  assert.equal(page.blobs[0].lastModified.toISOString(), '2024-10-01T10:00:00.000Z');
  assert.equal(page.nextMarker, '2!12!cC9j&');
});

test('List Blobs: last page, empty page, malformed answers', () => {
  assert.deepEqual(parseListBlobs('<EnumerationResults><Blobs /><NextMarker /></EnumerationResults>'), {
    blobs: [],
    nextMarker: undefined,
  });
  const last = parseListBlobs(
    `<EnumerationResults><Blobs>${blob('x', props(1))}</Blobs><NextMarker></NextMarker></EnumerationResults>`,
  );
  assert.equal(last.nextMarker, undefined);
  const bad = [
    '<html>proxy error</html>',
    `<EnumerationResults><Blobs>${blob('x', '<Etag>1</Etag>')}</Blobs></EnumerationResults>`,
    `<EnumerationResults><Blobs><Blob><Properties>${props(1)}</Properties></Blob></Blobs></EnumerationResults>`,
    `<EnumerationResults><Blobs>${blob('x&bogus;', props(1))}</Blobs></EnumerationResults>`,
  ];
  for (const b of bad) assert.throws(() => parseListBlobs(b), XmlShapeError, b);
});

test('error bodies: code and first line of the message only', () => {
  assert.deepEqual(
    parseError(
      '<?xml version="1.0"?><Error><Code>AuthenticationFailed</Code><Message>Server failed.\nRequestId:1\nTime:2</Message><AuthenticationErrorDetail>string to sign</AuthenticationErrorDetail></Error>',
    ),
    { code: 'AuthenticationFailed', message: 'Server failed.' },
  );
  assert.deepEqual(parseError(''), { code: undefined, message: undefined });
  assert.equal(
    blockListXml(['QQ==', 'Qg==']),
    '<?xml version="1.0" encoding="utf-8"?><BlockList><Latest>QQ==</Latest><Latest>Qg==</Latest></BlockList>',
  );
});

test('Shared Key canonicalization', () => {
  assert.equal(
    canonicalizedHeaders({
      'X-MS-Version': '2023-11-03',
      'x-ms-date': 'Tue,  01 Oct\t2024',
      'content-type': 'x',
      'x-ms-blob-type': ' BlockBlob ',
    }),
    'x-ms-blob-type:BlockBlob\nx-ms-date:Tue, 01 Oct 2024\nx-ms-version:2023-11-03\n',
  );
  // Emulator path-style: the account appears twice. Query names lower-cased and sorted, values decoded.
  assert.equal(
    canonicalizedResource('devstoreaccount1', '/devstoreaccount1/c', {
      restype: 'container',
      comp: 'list',
      Prefix: 'a b/',
      marker: '2!x',
    }),
    '/devstoreaccount1/devstoreaccount1/c\ncomp:list\nmarker:2!x\nprefix:a b/\nrestype:container',
  );
  const req = {
    method: 'put',
    encodedPath: '/c/a%20b',
    query: {},
    headers: { 'content-length': '0', 'if-none-match': '*', 'x-ms-date': 'D', 'x-ms-version': 'V' },
  };
  assert.equal(
    stringToSign(req, 'acct'),
    'PUT\n\n\n\n\n\n\n\n\n*\n\n\nx-ms-date:D\nx-ms-version:V\n/acct/c/a%20b',
  );
  const expected = createHmac('sha256', Buffer.from(KEY, 'base64'))
    .update(stringToSign(req, 'acct'))
    .digest('base64');
  assert.equal(sharedKeySigner('acct', KEY).authorization(req), `SharedKey acct:${expected}`);
  assert.equal(encodeBlobName("d ir/ü#?%'(*)!.txt"), 'd%20ir/%C3%BC%23%3F%25%27%28%2A%29%21.txt');
});

test('SAS string-to-sign layouts (signed version 2021-08-06)', () => {
  const se = new Date('2030-01-02T03:04:05.678Z');
  const c = new URLSearchParams(
    containerSas({ account: 'acct', key: KEY, container: 'data', permissions: 'rl', expiresOn: se }),
  );
  assert.equal(c.get('se'), '2030-01-02T03:04:05Z');
  assert.equal(c.get('sr'), 'c');
  assert.equal(c.get('spr'), 'https');
  const cToSign = [
    'rl',
    '',
    '2030-01-02T03:04:05Z',
    '/blob/acct/data',
    '',
    '',
    'https',
    '2021-08-06',
    'c',
    '',
    '',
    '',
    '',
    '',
    '',
    '',
  ].join('\n');
  assert.equal(
    c.get('sig'),
    createHmac('sha256', Buffer.from(KEY, 'base64')).update(cToSign).digest('base64'),
  );
  const a = new URLSearchParams(
    accountSas({ account: 'acct', key: KEY, permissions: 'rl', expiresOn: se, protocol: 'https,http' }),
  );
  const aToSign = 'acct\nrl\nb\nco\n\n2030-01-02T03:04:05Z\n\nhttps,http\n2021-08-06\n\n';
  assert.equal(
    a.get('sig'),
    createHmac('sha256', Buffer.from(KEY, 'base64')).update(aToSign).digest('base64'),
  );
});
