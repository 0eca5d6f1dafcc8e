import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isTaskgateError } from '../../../core/errors.ts';
import { cardPartial, compileMaskPlan, emailPartial, luhnValid, parseHashKey, createTokenizer } from '../../../core/mask/index.ts';

const KEY = 'hex:' + '42'.repeat(32);

describe('strategies', () => {
  it('partial card keeps format, first digit and last 4, and stays Luhn-valid', () => {
    for (const card of ['4111 1111 1111 1111', '5500-0000-0000-0004', '378282246310005', '6011111111111117', '4222222222222', '4111111111111111110']) {
      const p = cardPartial(card);
      assert.equal(p.length, card.length);
      assert.equal(p.replace(/\d/g, '#'), card.replace(/\d/g, '#'), 'separators stay');
      assert.equal(p[0], card[0]);
      assert.equal(p.slice(-4), card.slice(-4));
      assert.ok(luhnValid(p.replace(/\D/g, '')), `${p} is Luhn-valid`);
      assert.notEqual(p, card);
      assert.equal(cardPartial(p), p, 'idempotent');
    }
    assert.equal(cardPartial('4111 1111 1111 1111'), '4000 0000 0006 1111');
    const k6 = cardPartial('4111111111111111', 6);
    assert.equal(k6.slice(-6), '111111');
    assert.ok(luhnValid(k6));
  });
  it('partial email keeps the first letter and the domain', () => {
    assert.equal(emailPartial('jane.doe@example.com'), 'j***@example.com');
    const plan = compileMaskPlan([{ detector: 'email', strategy: 'partial' }, { detector: 'ssn', strategy: 'partial' }, { detector: 'iban', strategy: 'partial' }]);
    assert.equal(plan.maskText('to Bob@Example.org, ssn 123-45-6789').text, 'to B***@Example.org, ssn ***-**-6789');
    assert.equal(plan.maskText('DE89 3704 0044 0532 0130 00').text, 'DE** **** **** **** **30 00');
  });
  it('hash tokens are deterministic per key, differ across keys, and join across formats', () => {
    const t1 = createTokenizer(parseHashKey(KEY));
    const t2 = createTokenizer(parseHashKey('hex:' + '43'.repeat(32)));
    assert.match(t1('4111111111111111', 'card'), /^tok_[a-z2-7]{32}$/);
    assert.equal(t1('4111111111111111', 'card'), t1('4111111111111111', 'card'));
    assert.equal(t1('4111 1111 1111 1111', 'card'), t1('4111-1111-1111-1111', 'card'));
    assert.equal(t1('Jane@Example.com', 'email'), t1('jane@example.com', 'email'));
    assert.notEqual(t1('4111111111111111', 'card'), t2('4111111111111111', 'card'));
    assert.notEqual(t1('a'), t1('b'));
    // a column rule and a detector give the same token for the same card: joins keep working
    const plan = compileMaskPlan([{ column: 'card', strategy: 'hash' }, { detector: 'card', strategy: 'hash' }], { hashKey: KEY });
    const rm = plan.forColumns([{ name: 'card', table: 'public.payments' }, { name: 'note', table: 'public.payments' }]);
    const a = rm.mask(0, '4111 1111 1111 1111').value;
    const b = rm.mask(1, '4111111111111111').value;
    assert.equal(a, b);
  });
  it('refuses short keys and hash rules without a key', () => {
    assert.throws(() => parseHashKey('short'), (e) => isTaskgateError(e) && e.code === 'config_invalid');
    assert.throws(() => compileMaskPlan([{ column: 'x', strategy: 'hash' }]), (e) => isTaskgateError(e) && e.code === 'config_invalid');
    assert.equal(parseHashKey('base64:' + Buffer.alloc(16, 1).toString('base64')).length, 16);
  });
  it('refuses malformed rules (a rule that can never fire is an error)', () => {
    const bad = [
      { strategy: 'redact' },
      { column: 'a', field: 'b', strategy: 'redact' },
      { column: 'a.b.c.d', strategy: 'redact' },
      { field: 'a..b', strategy: 'redact' },
      { field: 'items[x]', strategy: 'redact' },
      { detector: 'passport', strategy: 'redact' },
      { column: 'a', strategy: 'scramble' },
      { column: 'a', strategy: 'redact', keep: 2 },
      { column: 'a', strategy: 'partial', keep: 1.5 },
    ];
    for (const r of bad) assert.throws(() => compileMaskPlan([r as never]), (e) => isTaskgateError(e) && e.code === 'decision_invalid', JSON.stringify(r));
  });
});

describe('row masking', () => {
  const plan = compileMaskPlan(
    [
      { column: 'public.users.email', strategy: 'partial' },
      { column: '*.ssn', strategy: 'null' },
      { column: 'card_*', strategy: 'redact' },
      { detector: 'card', strategy: 'partial' },
      { detector: 'email', strategy: 'redact' },
    ],
    { hashKey: KEY },
  );
  it('masks by column rule (qualified names, globs, case-insensitive) and by detectors elsewhere', () => {
    const rm = plan.forColumns([
      { name: 'email', table: 'public.users' },
      { name: 'SSN', table: 'hr.people' },
      { name: 'card_number', table: 'public.payments' },
      { name: 'note', table: 'public.orders' },
      { name: 'id', table: 'public.orders', typeOid: 23 },
      { name: 'email', table: 'public.audit' },
    ]);
    assert.equal(rm.active, true);
    const row = ['jane@example.com', '123-45-6789', '4111111111111111', 'paid with 4111 1111 1111 1111 by bob@example.com', '42', 'x@example.org'];
    const out = row.map((v, i) => rm.mask(i, v).value);
    assert.deepEqual(out, ['j***@example.com', null, '[redacted]', 'paid with 4000 0000 0006 1111 by [redacted:email]', '42', '[redacted:email]']);
    assert.equal(rm.mask(3, null).value, null);
    assert.equal(rm.mask(3, 'nothing here').masked, false);
    assert.deepEqual(rm.masked_counts(), { email: 2, SSN: 1, card_number: 1, note: 1 });
    assert.deepEqual(rm.detector_counts(), { 'detector:card': 1, 'detector:email': 2 });
    assert.equal(rm.columnStrategy(1), 'null');
    assert.equal(rm.columnStrategy(3), undefined);
  });
  it('follows lineage: a derived column whose sources include a masked column is masked', () => {
    const rm = plan.forColumns([
      { name: 'upper', sources: ['public.users.email'] },
      { name: 'x', sources: ['public.orders.total'] },
      { name: 'c', sourcesUnknown: true },
    ]);
    assert.equal(rm.mask(0, 'JANE@EXAMPLE.COM').value, 'J***@EXAMPLE.COM');
    assert.equal(rm.mask(1, '12.50').masked, false);
    // unknown lineage, statement does not touch a masked column: only detectors
    assert.equal(rm.mask(2, 'abc').masked, false);
    const strict = plan.forColumns([{ name: 'c', sourcesUnknown: true }], { referencesMaskedColumn: true });
    // unknown lineage and the statement reads a masked column: the strictest column rule (null)
    assert.equal(strict.mask(0, 'abc').value, null);
    assert.equal(plan.referencesMaskedColumn(['public.orders.total', 'public.users.email']), true);
    assert.equal(plan.referencesMaskedColumn(['public.orders.total']), false);
  });
  it('non-text columns become NULL instead of an unparseable marker; json columns stay JSON', () => {
    const rm = plan.forColumns([
      { name: 'card_no', table: 't', typeOid: 20 },
      { name: 'doc', table: 't', typeOid: 3802 },
      { name: 'card_doc', table: 't', typeOid: 3802 },
      { name: 'n', table: 't', typeOid: 20 },
    ]);
    assert.equal(rm.mask(0, '4111111111111111').value, null);
    const doc = rm.mask(1, '{"pay": "4111111111111111", "n": 4111111111111111, "to": "a@b.co"}').value!;
    assert.deepEqual(JSON.parse(doc), { pay: '4000000000061111', n: '4000000000061111', to: '[redacted:email]' });
    assert.equal(JSON.parse(rm.mask(2, '{"a":1}').value!), '[redacted]');
    assert.equal(rm.mask(3, '4111111111111111').value, null);
  });
  it('a plan without rules is inactive', () => {
    const rm = compileMaskPlan([]).forColumns([{ name: 'a' }]);
    assert.equal(rm.active, false);
    assert.equal(rm.mask(0, '4111111111111111').masked, false);
  });
  it('caches compiled plans per rules and key', () => {
    const rules = [{ detector: 'card' as const, strategy: 'redact' as const }];
    assert.equal(compileMaskPlan(rules), compileMaskPlan([...rules]));
    assert.notEqual(compileMaskPlan(rules, { cardIin: false }), compileMaskPlan(rules));
  });
});
