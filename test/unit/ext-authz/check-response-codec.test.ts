import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { encodeCheckResponse } from '../../../ext-authz/check-response-codec.ts';
import { checkResponse } from '../../../ext-authz/check-response.ts';
import { envoyServices } from '../../../ext-authz/protos.ts';
import type { AuthzResult } from '../../../sidecar/http/authorize.ts';

type Codec = { responseSerialize: (v: unknown) => Buffer; responseDeserialize: (b: Buffer) => unknown };
const check = envoyServices().authorization.Check as unknown as Codec;

const allow = (over: Partial<AuthzResult & { allowed: true }> = {}): AuthzResult =>
  ({
    allowed: true,
    decision_id: '0193c1a2-7dd8-7336-a382-4f26e9b86d28',
    set_headers: [['x-taskgate-decision-id', '0193c1a2-7dd8-7336-a382-4f26e9b86d28']],
    remove_headers: ['x-taskgate-task', 'authorization'],
    response_headers: [],
    query_set: [],
    query_remove: [],
    mask: [],
    ...over,
  }) as AuthzResult;

const corpus: [string, AuthzResult][] = [
  ['plain allow', allow()],
  ['allow with everything', allow({
    set_headers: [['authorization', 'Bearer sa-token'], ['x-empty', '']],
    response_headers: [['x-r', 'v'], ['x-r', 'w']],
    query_set: [['a', 'b'], ['', '']],
    query_remove: ['c', ''],
    mask: [{ path: 'data.*', strategy: 'redact' }] as never,
    dynamic_metadata: { n: 1.5, neg: -3, big: 2 ** 53, b: true, f: false, z: null, l: [1, 'x', { q: false }, []], o: { k: 'ü€😀', e: {} }, '': '' },
  })],
  ['deny 403 with body and metadata', { allowed: false, status: 403, headers: [['x-taskgate-decision-id', 'd-2'], ['content-type', 'application/json']], body: '{"message":"denied: ⛔"}', dynamic_metadata: { why: 'x' } }],
  ['deny 401 empty body', { allowed: false, status: 401, headers: [], body: '' }],
  ['deny 504', { allowed: false, status: 504, headers: [], body: 'x'.repeat(300) }],
];

describe('CheckResponse encoder', () => {
  for (const [name, r] of corpus) {
    it(`writes the same bytes as proto-loader: ${name}`, () => {
      const o = checkResponse(r);
      const direct = encodeCheckResponse(o);
      assert.ok(direct, 'encoded');
      assert.equal(direct.toString('hex'), check.responseSerialize(o).toString('hex'));
      assert.deepEqual(check.responseDeserialize(direct), check.responseDeserialize(check.responseSerialize(o)));
    });
  }

  it('matches proto-loader on 2,000 random responses (strings of every length class, nested metadata)', () => {
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const text = () => {
      const n = [0, 1, 5, 127, 128, 300, 20000][Math.floor(rnd() * 7)]!;
      let s = '';
      for (let i = 0; i < n; i++) s += rnd() < 0.9 ? String.fromCharCode(97 + Math.floor(rnd() * 26)) : ['é', '€', '😀', '\u0000'][Math.floor(rnd() * 4)]!;
      return s;
    };
    const value = (depth: number): unknown => {
      const k = Math.floor(rnd() * (depth > 2 ? 4 : 6));
      if (k === 0) return null;
      if (k === 1) return (rnd() - 0.5) * 1e6;
      if (k === 2) return text();
      if (k === 3) return rnd() < 0.5;
      if (k === 4) return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [cut(text(), 10), value(depth + 1)]));
    };
    // Whole characters only: cutting '😀' would leave a lone surrogate (see the next test).
    const cut = (s: string, n: number) => Array.from(s).slice(0, n).join('');
    const pairs = () => Array.from({ length: Math.floor(rnd() * 4) }, () => [text(), text()] as [string, string]);
    for (let i = 0; i < 2000; i++) {
      const r: AuthzResult =
        rnd() < 0.6
          ? allow({ set_headers: pairs(), remove_headers: pairs().map((p) => p[0]), response_headers: pairs(), query_set: pairs(), query_remove: pairs().map((p) => p[1]), ...(rnd() < 0.5 ? { dynamic_metadata: { m: value(0) } } : {}) })
          : { allowed: false, status: [401, 403, 429, 500][Math.floor(rnd() * 4)]!, headers: pairs(), body: text(), ...(rnd() < 0.5 ? { dynamic_metadata: { x: value(0) } } : {}) };
      const o = checkResponse(r);
      const direct = encodeCheckResponse(o);
      assert.ok(direct, `case ${i} encoded`);
      assert.ok(direct.equals(check.responseSerialize(o)), `case ${i}: bytes differ`);
    }
  });

  it('writes a lone surrogate as U+FFFD, so the bytes stay valid UTF-8 (protobufjs would write an invalid sequence Envoy rejects)', () => {
    const o = checkResponse(allow({ dynamic_metadata: { k: 'a\ud83db' } }));
    const direct = encodeCheckResponse(o)!;
    assert.ok(direct.includes(Buffer.from('a\ufffdb')));
    assert.ok(!direct.includes(Buffer.from([0xed, 0xa0, 0xbd])));
    assert.equal(new TextDecoder('utf-8', { fatal: true }).decode(direct.subarray(direct.indexOf(Buffer.from('a\ufffdb')))).length > 0, true);
  });

  it('declines what it does not know (the caller falls back to proto-loader)', () => {
    assert.equal(encodeCheckResponse({ status: { code: 0 }, okResponse: { headers: [], dynamicMetadata: { fields: {} } } }), undefined);
    assert.equal(encodeCheckResponse({ status: { code: 0, details: [] } }), undefined);
    assert.equal(encodeCheckResponse({ okResponse: {}, deniedResponse: {} }), undefined);
    assert.equal(encodeCheckResponse({ status: { code: 1.5 } }), undefined);
    assert.equal(encodeCheckResponse({ dynamicMetadata: { fields: { a: { stringValue: 'x', numberValue: 1 } } } }), undefined);
    assert.equal(encodeCheckResponse({ okResponse: { headers: [{ header: { key: 1 } }] } }), undefined);
    assert.equal(encodeCheckResponse('nope'), undefined);
  });
});
