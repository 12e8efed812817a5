/**
 * Secure mode's sealed bodies: what the proxy seals decrypts with the AWS Encryption
 * SDK (the oracle) and carries the binding context; what the SDK seals with that
 * context opens; a flipped byte, a cut, or a body bound to another exchange is refused
 * and nothing of a failed frame reaches the app.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { AlgorithmSuiteIdentifier } from '@aws-crypto/client-node';
import { isMembraneError } from '../../../policy/errors.js';
import { dekKeyring } from '../../../proxies/core/index.js';
import { HttpErrorCode } from '../../../proxies/http/errors.js';
import { type BoundRequest, bindingContext, openBody, sealBody } from '../../../proxies/http/seal.js';
import { bytes, sdk } from '../../helpers/core.js';

const keyring = dekKeyring(randomBytes(32));
const req: BoundRequest = { method: 'POST', host: 'api.consumer.test', path: '/v1/summary' };
const ctx = bindingContext(req);

/** Feeds `buf` in uneven chunks, as a socket would. */
function chunked(buf: Buffer, step = 777): Readable {
  const parts: Buffer[] = [];
  for (let off = 0; off < buf.length; off += step) parts.push(buf.subarray(off, off + step));
  return Readable.from(parts, { objectMode: false });
}

/** Everything the stream released, and the error it ended with (if any). */
async function drain(r: Readable): Promise<{ out: Buffer; error?: unknown }> {
  const parts: Buffer[] = [];
  try {
    for await (const c of r) parts.push(c as Buffer);
    return { out: Buffer.concat(parts) };
  } catch (error) {
    return { out: Buffer.concat(parts), error };
  }
}

async function sdkSeal(plain: Buffer, context: Record<string, string>, frameLength: number): Promise<Buffer> {
  const { result } = await sdk.encrypt(keyring, plain, {
    encryptionContext: context,
    frameLength,
    suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
  });
  return Buffer.from(result);
}

const isInvalid = (e: unknown) => isMembraneError(e, HttpErrorCode.SEALED_BODY_INVALID);

describe('bindingContext', () => {
  test('binds method, host, path and direction under Membrane keys', () => {
    assert.deepEqual(ctx, {
      'membrane:datasource': 'http-egress',
      'membrane:path': '/v1/summary',
      'membrane:method': 'POST',
      'membrane:host': 'api.consumer.test',
      'membrane:direction': 'request',
    });
  });

  test('lower-cases the host, keeps the port, cuts the query and fragment, and names the response direction', () => {
    const c = bindingContext(
      { method: 'PUT', host: 'API.Consumer.Test:8443', path: '/a//b?token=x#f' },
      'response',
    );
    assert.equal(c['membrane:host'], 'api.consumer.test:8443');
    assert.equal(c['membrane:path'], '/a//b');
    assert.equal(c['membrane:direction'], 'response');
  });

  const bad: [string, BoundRequest][] = [
    ['a method with a space', { method: 'PO ST', host: 'h.test', path: '/' }],
    ['an empty method', { method: '', host: 'h.test', path: '/' }],
    ['a host with a slash', { method: 'GET', host: 'h.test/x', path: '/' }],
    ['an empty host', { method: 'GET', host: '', path: '/' }],
    ['a relative path', { method: 'GET', host: 'h.test', path: 'v1' }],
    ['a path with a control character', { method: 'GET', host: 'h.test', path: '/a\nb' }],
    ['a path with non-ASCII text', { method: 'GET', host: 'h.test', path: '/café' }],
  ];
  for (const [what, r] of bad) {
    test(`refuses ${what} with SEAL_FAILED`, () => {
      assert.throws(
        () => bindingContext(r),
        (e: unknown) => isMembraneError(e, HttpErrorCode.SEAL_FAILED),
      );
    });
  }
});

describe('sealBody', () => {
  for (const size of [0, 1, 4095, 64 * 1024, 64 * 1024 + 1, 300_000]) {
    test(`a ${size}-byte body decrypts with the AWS Encryption SDK under the binding context`, async () => {
      const plain = bytes(size, size);
      const { out, error } = await drain(sealBody(chunked(plain), keyring, ctx));
      assert.equal(error, undefined);
      const { plaintext, messageHeader } = await sdk.decrypt(keyring, out);
      assert.ok(Buffer.from(plaintext).equals(plain));
      for (const [k, v] of Object.entries(ctx)) assert.equal(messageHeader.encryptionContext[k], v, k);
    });
  }

  test('extra non-reserved context entries travel authenticated beside the binding', async () => {
    const { out } = await drain(
      sealBody(chunked(bytes(10)), keyring, { ...ctx, 'content-type': 'application/json' }),
    );
    const { messageHeader } = await sdk.decrypt(keyring, out);
    assert.equal(messageHeader.encryptionContext['content-type'], 'application/json');
  });

  test('a context that is not an HTTP binding is refused before anything is sealed', () => {
    const contexts: Record<string, string>[] = [
      {},
      { 'membrane:datasource': 'sales', 'membrane:path': 'a.csv' },
      { ...ctx, 'membrane:direction': 'sideways' },
    ];
    for (const c of contexts)
      assert.throws(
        () => sealBody(chunked(bytes(1)), keyring, c),
        (e: unknown) => isMembraneError(e, HttpErrorCode.SEAL_FAILED),
      );
  });

  test('a failing app body ends the sealed stream with SEAL_FAILED', async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error('app went away'));
      },
    });
    const { error } = await drain(sealBody(failing, keyring, ctx));
    assert.ok(isMembraneError(error, HttpErrorCode.SEAL_FAILED), String(error));
  });
});

describe('openBody', () => {
  test('opens a message the SDK sealed with the binding context, frame by frame', async () => {
    for (const frameLength of [512, 4096, 64 * 1024]) {
      const plain = bytes(10_000, frameLength);
      const sealed = await sdkSeal(plain, bindingContext(req, 'response'), frameLength);
      const { out, error } = await drain(
        openBody(chunked(sealed, 333), keyring, bindingContext(req, 'response')),
      );
      assert.equal(error, undefined);
      assert.ok(out.equals(plain), `frame length ${frameLength}`);
    }
  });

  test('round-trips what sealBody produced', async () => {
    const plain = bytes(200_000, 7);
    const { out: sealed } = await drain(sealBody(chunked(plain), keyring, ctx));
    const { out } = await drain(openBody(chunked(sealed, 4000), keyring, ctx));
    assert.ok(out.equals(plain));
  });

  test('a flipped byte anywhere in a one-frame body is refused and no plaintext is released', async () => {
    const plain = bytes(300, 3);
    const sealed = await sdkSeal(plain, ctx, 4096);
    for (let i = 0; i < sealed.length; i++) {
      const bad = Buffer.from(sealed);
      bad[i] = (bad[i] ?? 0) ^ 0x01;
      const { out, error } = await drain(openBody(chunked(bad, 97), keyring, ctx));
      assert.ok(isInvalid(error), `byte ${i}: ${String(error)}`);
      assert.equal(out.length, 0, `byte ${i} released ${out.length} bytes`);
    }
  });

  test('a flipped byte in frame k releases only the verified frames before it, never a byte of frame k', async () => {
    const F = 1024;
    const plain = bytes(5 * F + 100, 5);
    const sealed = await sdkSeal(plain, ctx, F);
    const headerLength = sealed.length - (5 * (F + 32) + (24 + 100 + 16));
    for (let k = 0; k <= 5; k++) {
      for (const within of [0, 20, F]) {
        const at = Math.min(headerLength + k * (F + 32) + within, sealed.length - 1);
        const bad = Buffer.from(sealed);
        bad[at] = (bad[at] ?? 0) ^ 0x80;
        const { out, error } = await drain(openBody(chunked(bad, 500), keyring, ctx));
        assert.ok(isInvalid(error), `frame ${k} +${within}: ${String(error)}`);
        assert.ok(out.length <= k * F, `frame ${k} +${within}: released ${out.length} bytes`);
        assert.ok(out.equals(plain.subarray(0, out.length)), 'what was released is the authentic prefix');
      }
    }
  });

  const wrong: [string, Record<string, string>][] = [
    ['another method', bindingContext({ ...req, method: 'PUT' })],
    ['another host', bindingContext({ ...req, host: 'evil.test' })],
    ['another path', bindingContext({ ...req, path: '/v1/other' })],
    ['the other direction', bindingContext(req, 'response')],
  ];
  for (const [what, expected] of wrong) {
    test(`a body sealed for this exchange is refused when opened for ${what}`, async () => {
      const sealed = await sdkSeal(bytes(100), ctx, 4096);
      const { out, error } = await drain(openBody(chunked(sealed), keyring, expected));
      assert.ok(isInvalid(error), String(error));
      assert.match((error as Error).message, /FORMAT_CONTEXT_MISMATCH/);
      assert.equal(out.length, 0);
    });
  }

  test('a body sealed under another DEK is refused', async () => {
    const { out: sealed } = await drain(sealBody(chunked(bytes(100)), dekKeyring(randomBytes(32)), ctx));
    const { out, error } = await drain(openBody(chunked(sealed), keyring, ctx));
    assert.ok(isInvalid(error), String(error));
    assert.equal(out.length, 0);
  });

  test('a stored object (file binding) is refused as an HTTP body', async () => {
    const fileCtx = { 'membrane:datasource': 'http-egress', 'membrane:path': 'v1/summary' };
    const sealed = await sdkSeal(bytes(100), fileCtx, 4096);
    const { error } = await drain(openBody(chunked(sealed), keyring, ctx));
    assert.ok(isInvalid(error), String(error));
  });

  const cuts: [string, (b: Buffer) => Buffer][] = [
    ['cut inside the header', (b) => b.subarray(0, 40)],
    ['cut before the final frame', (b) => b.subarray(0, b.length - 30)],
    ['followed by extra bytes', (b) => Buffer.concat([b, Buffer.from('x')])],
    ['empty', () => Buffer.alloc(0)],
  ];
  for (const [what, mangle] of cuts) {
    test(`a sealed body ${what} is refused`, async () => {
      const sealed = await sdkSeal(bytes(2000), ctx, 4096);
      const { out, error } = await drain(openBody(chunked(mangle(sealed)), keyring, ctx));
      assert.ok(isInvalid(error), String(error));
      if (what !== 'followed by extra bytes') assert.equal(out.length, 0);
    });
  }
});
