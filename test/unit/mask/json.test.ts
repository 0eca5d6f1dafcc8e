import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileFieldPath, compileMaskPlan, luhnValid, maskJson, maskJsonText } from '../../../core/mask/index.ts';

const KEY = 'hex:' + '42'.repeat(32);

describe('field paths', () => {
  it('match keys, wildcards, array indices and any depth', () => {
    const cases: [string, (string | number)[], boolean][] = [
      ['data.*', ['data', 'password'], true],
      ['data.*', ['data'], false],
      ['data.*', ['data', 'a', 'b'], false],
      ['items[*].card', ['items', 3, 'card'], true],
      ['items[*].card', ['items', 'x', 'card'], false],
      ['items[0].card', ['items', 1, 'card'], false],
      ['items.*.card', ['items', 1, 'card'], true],
      ['spec.containers[*].env[*].value', ['spec', 'containers', 0, 'env', 2, 'value'], true],
      ['**.password', ['password'], true],
      ['**.password', ['a', 0, 'b', 'password'], true],
      ['**.password', ['a', 'passwords'], false],
      ['metadata.annotations["a.b/c"]', ['metadata', 'annotations', 'a.b/c'], true],
    ];
    for (const [p, path, want] of cases) assert.equal(compileFieldPath(p)(path), want, `${p} ~ ${JSON.stringify(path)}`);
  });
});

describe('JSON masking', () => {
  const plan = compileMaskPlan(
    [
      { field: 'items[*].card', strategy: 'partial' },
      { field: 'spec.containers[*].env[*].value', strategy: 'redact' },
      { field: '**.token', strategy: 'hash' },
      { field: 'profile', strategy: 'null' },
      { detector: 'email', strategy: 'redact' },
      { detector: 'card', strategy: 'redact' },
    ],
    { hashKey: KEY },
  );
  it('masks by path and by detectors, leaving every other byte as it was', () => {
    const body =
      '{\n  "items": [ {"card": "4111 1111 1111 1111", "id": 12345678901234567890}, {"card": "5500000000000004"} ],\n' +
      '  "spec": {"containers": [{"env": [{"name": "DB_PASSWORD", "value": "hunter2"}, {"name": "N", "value": 3}]}]},\n' +
      '  "note": "contact jane@example.com", "nested": {"a": [{"token": "abc"}]}, "profile": {"age": 42, "tags": ["x"]},\n' +
      '  "unicode": "Zoë \\u00e9 💳", "n": 4111111111111111\n}';
    const r = maskJsonText(Buffer.from(body), plan, { maxBytes: 1 << 20 });
    assert.ok(r.ok);
    const text = r.body.toString();
    // untouched parts are byte-identical (big integers keep their digits, whitespace kept)
    assert.ok(text.includes('"id": 12345678901234567890}'));
    assert.ok(text.includes('"unicode": "Zoë \\u00e9 💳"'));
    assert.ok(text.startsWith('{\n  "items": [ {"card": '));
    const v = JSON.parse(text);
    assert.equal(v.items[0].card, '4000 0000 0006 1111');
    assert.equal(v.items[1].card, '5000000000050004');
    assert.ok(luhnValid(v.items[1].card));
    assert.deepEqual(v.spec.containers[0].env, [{ name: 'DB_PASSWORD', value: '[redacted]' }, { name: 'N', value: null }]);
    assert.equal(v.note, 'contact [redacted:email]');
    assert.match(v.nested.a[0].token, /^tok_[a-z2-7]{32}$/);
    assert.deepEqual(v.profile, { age: null, tags: [null] });
    assert.equal(v.n, '[redacted:card]');
    assert.deepEqual(r.counts, {
      'items[*].card': 2,
      'spec.containers[*].env[*].value': 2,
      'detector:email': 1,
      'nested.a[*].token': 1,
      profile: 2,
      'detector:card': 1,
    });
    assert.ok(!JSON.stringify(r.counts).includes('jane'), 'counts never carry values');
  });
  it('returns the input buffer untouched when nothing matches', () => {
    const body = Buffer.from('{"a": [1, 2.5e3, true, null, "x"], "b": {}}');
    const r = maskJsonText(body, plan, { maxBytes: 1000 });
    assert.ok(r.ok && !r.changed && r.body.equals(body));
  });
  it('Kubernetes Secret data: masked values stay base64, detectors see the decoded value', () => {
    const secretPlan = compileMaskPlan([
      { field: 'data.*', strategy: 'redact' },
      { field: 'items[*].data.*', strategy: 'redact' },
      { detector: 'cloud_key', strategy: 'redact' },
    ]);
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    const secret = { kind: 'Secret', apiVersion: 'v1', metadata: { name: 's' }, data: { password: b64('hunter2'), 'tls.key': b64('x') }, type: 'Opaque' };
    const r = maskJsonText(Buffer.from(JSON.stringify(secret)), secretPlan, { maxBytes: 1 << 20 });
    assert.ok(r.ok);
    const v = JSON.parse(r.body.toString());
    assert.equal(Buffer.from(v.data.password, 'base64').toString(), '[redacted]');
    assert.equal(Buffer.from(v.data['tls.key'], 'base64').toString(), '[redacted]');
    assert.equal(v.metadata.name, 's');
    // a SecretList, and a ConfigMap-like object whose base64 value hides an AWS key
    const detectOnly = compileMaskPlan([{ detector: 'cloud_key', strategy: 'redact' }]);
    const list = { kind: 'SecretList', items: [{ kind: 'Secret', data: { creds: b64('aws_access_key_id=AKIAIOSFODNN7EXAMPLE\n') } }] };
    const r2 = maskJsonText(Buffer.from(JSON.stringify(list)), detectOnly, { maxBytes: 1 << 20 });
    assert.ok(r2.ok);
    const v2 = JSON.parse(r2.body.toString());
    assert.equal(Buffer.from(v2.items[0].data.creds, 'base64').toString(), 'aws_access_key_id=[redacted:cloud_key]\n');
    assert.deepEqual(r2.counts, { 'detector:cloud_key': 1 });
  });
  it('maskJson works on parsed values', () => {
    const r = maskJson({ items: [{ card: '4111111111111111', x: 1 }], to: 'bob@example.com' }, plan);
    assert.deepEqual(r.value, { items: [{ card: '4000000000061111', x: 1 }], to: '[redacted:email]' });
  });
  it('NDJSON / watch streams with `multiple`', () => {
    const body = '{"type":"ADDED","object":{"n":"a@b.co"}}\n{"type":"MODIFIED","object":{"n":"x"}}\n';
    const r = maskJsonText(Buffer.from(body), plan, { maxBytes: 1000, multiple: true });
    assert.ok(r.ok);
    assert.equal(r.body.toString(), '{"type":"ADDED","object":{"n":"[redacted:email]"}}\n{"type":"MODIFIED","object":{"n":"x"}}\n');
    assert.equal(maskJsonText(Buffer.from(body), plan, { maxBytes: 1000 }).ok, false);
  });
  it('fails clearly on oversized, non-UTF-8 and non-JSON bodies', () => {
    const big = maskJsonText(Buffer.from('{"a":"' + 'x'.repeat(2000) + '"}'), plan, { maxBytes: 1000 });
    assert.equal(big.ok, false);
    assert.ok(!big.ok && big.error === 'too_large' && /exceeds the masking limit of 1000 bytes/.test(big.message));
    for (const bad of ['{"a":', '{"a" 1}', "{'a':1}", '[1,]', '{"a":1} x', 'NaN', '"\u0001"', '']) {
      const r = maskJsonText(Buffer.from(bad), plan, { maxBytes: 1000 });
      assert.ok(!r.ok && r.error === 'not_json', JSON.stringify(bad));
    }
    const r = maskJsonText(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d]), plan, { maxBytes: 1000 });
    assert.ok(!r.ok && r.error === 'not_json');
    const deep = maskJsonText(Buffer.from('['.repeat(10000) + ']'.repeat(10000)), plan, { maxBytes: 1 << 20 });
    assert.ok(!deep.ok && deep.error === 'not_json');
  });
  it('agrees with JSON.parse on what is valid JSON', () => {
    const samples = ['{}', '[]', '0', '-0.5e-3', '"\\ud83d\\udcb3"', '{"a":{"b":[null,true,false]}}', ' \n[1 , 2]\t', '01', '1.', '.5', '+1', '[1]]', 'tru', '"\\x"'];
    for (const s of samples) {
      let valid = true;
      try {
        JSON.parse(s);
      } catch {
        valid = false;
      }
      assert.equal(maskJsonText(Buffer.from(s), plan, { maxBytes: 1000 }).ok, valid, JSON.stringify(s));
    }
  });
});
