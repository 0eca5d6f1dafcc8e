import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileMaskPlan, createStreamMasker, maskBytes, type MaskPlan } from '../../../core/mask/index.ts';
import { DETECTORS, type MaskRule } from '../../../core/policy-contract.ts';
import { xorshift32 } from '../../support/random.ts';

const ALL: MaskRule[] = DETECTORS.map((d) => ({ detector: d, strategy: 'redact' }));
const redactAll = compileMaskPlan(ALL);

/** Feeds `input` cut at the given offsets, then flushes. */
function masked(plan: MaskPlan, input: Buffer, cuts: number[]): Buffer {
  const sm = createStreamMasker(plan);
  const out: Buffer[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    out.push(sm.push(input.subarray(prev, c)));
    prev = c;
  }
  out.push(sm.flush());
  return Buffer.concat(out);
}

/** Every single split point and every pair of split points give the same output as the whole input. */
function assertSplitInvariant(plan: MaskPlan, text: string | Buffer, expected?: string): void {
  const input = typeof text === 'string' ? Buffer.from(text) : text;
  const whole = masked(plan, input, []);
  if (expected !== undefined) assert.equal(whole.toString('utf8'), expected);
  for (let i = 1; i < input.length; i++) {
    const got = masked(plan, input, [i]);
    assert.ok(got.equals(whole), `split at ${i}: ${JSON.stringify(got.toString('latin1'))} != ${JSON.stringify(whole.toString('latin1'))}`);
  }
  if (input.length <= 80) {
    for (let i = 1; i < input.length; i++)
      for (let j = i + 1; j < input.length; j++) {
        const got = masked(plan, input, [i, j]);
        assert.ok(got.equals(whole), `split at ${i},${j}: ${JSON.stringify(got.toString('latin1'))}`);
      }
  }
}

describe('stream masking: every chunk split point', () => {
  it('card numbers, plain and grouped', () => {
    assertSplitInvariant(redactAll, 'pay 4111 1111 1111 1111 now\n', 'pay [redacted:card] now\n');
    assertSplitInvariant(redactAll, '4111111111111111', '[redacted:card]');
    assertSplitInvariant(redactAll, 'id 4111111111111112 ok', 'id 4111111111111112 ok');
    assertSplitInvariant(redactAll, 'amount 4111111111111111.50 EUR', 'amount 4111111111111111.50 EUR');
  });
  it('emails, keys, JWTs, SSNs, IBANs, phones', () => {
    assertSplitInvariant(redactAll, 'From: jane.doe@example.com\r\n', 'From: [redacted:email]\r\n');
    assertSplitInvariant(redactAll, 'export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n', 'export AWS_ACCESS_KEY_ID=[redacted:cloud_key]\n');
    assertSplitInvariant(
      redactAll,
      'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n',
      'aws_secret_access_key = [redacted:cloud_key]\n',
    );
    assertSplitInvariant(redactAll, 'tok=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig;', 'tok=[redacted:jwt];');
    assertSplitInvariant(redactAll, 'ssn 123-45-6789, iban DE89 3704 0044 0532 0130 00.', 'ssn [redacted:ssn], iban [redacted:iban].');
    assertSplitInvariant(redactAll, 'tel (415) 555-2671 or +44 20 7946 0958!', 'tel [redacted:phone] or [redacted:phone]!');
  });
  it('UTF-8 text around a card, never splitting a multi-byte sequence', () => {
    const input = 'Zoë 💳 4111 1111 1111 1111 ✓\n';
    assertSplitInvariant(redactAll, input, 'Zoë 💳 [redacted:card] ✓\n');
    // each emitted piece is valid UTF-8 on its own
    const buf = Buffer.from(input);
    for (let i = 1; i < buf.length; i++) {
      const sm = createStreamMasker(redactAll);
      for (const piece of [sm.push(buf.subarray(0, i)), sm.push(buf.subarray(i)), sm.flush()]) {
        assert.doesNotThrow(() => new TextDecoder('utf-8', { fatal: true }).decode(piece), `split ${i}`);
      }
    }
  });
  it('ANSI colour codes around and inside a card number are kept intact', () => {
    assertSplitInvariant(redactAll, 'x \x1b[1;31m4111 1111 1111 1111\x1b[0m y', 'x \x1b[1;31m[redacted:card]\x1b[0m y');
    // grep --color highlighting part of the number: still found, escapes kept in order
    assertSplitInvariant(redactAll, '4111 1111 \x1b[01;31m\x1b[K1111\x1b[m\x1b[K 1111\n', '[redacted:card]\x1b[01;31m\x1b[K\x1b[m\x1b[K\n');
    // an OSC title that contains an address is not rewritten
    assertSplitInvariant(redactAll, '\x1b]0;bob@example.com: ~\x07$ ', '\x1b]0;bob@example.com: ~\x07$ ');
  });
  it('a private key block spanning many chunks is masked entirely', () => {
    const body = Array.from({ length: 25 }, (_, i) => 'MIIEpAIBAAKCAQEA' + String(i).padStart(2, '0') + 'x'.repeat(46)).join('\r\n');
    const input = `$ cat id_rsa\r\n-----BEGIN RSA PRIVATE KEY-----\r\n${body}\r\n-----END RSA PRIVATE KEY-----\r\n$ `;
    const want = '$ cat id_rsa\r\n[redacted:private_key]\r\n$ ';
    const buf = Buffer.from(input);
    assert.equal(masked(redactAll, buf, []).toString(), want);
    for (const size of [1, 2, 7, 64, 100, 333]) {
      const cuts: number[] = [];
      for (let i = size; i < buf.length; i += size) cuts.push(i);
      assert.equal(masked(redactAll, buf, cuts).toString(), want, `chunk size ${size}`);
    }
    // memory while inside the block stays bounded by one line
    const sm = createStreamMasker(redactAll);
    let maxPending = 0;
    for (let i = 0; i < buf.length; i += 5) {
      const out = sm.push(buf.subarray(i, i + 5)).toString();
      assert.ok(!out.includes('MIIE'), 'no key material is emitted');
      maxPending = Math.max(maxPending, sm.pendingBytes());
    }
    assert.ok(maxPending < 300, `pending ${maxPending}`);
  });
  it('a BEGIN line without key material after it ends at the next ordinary line', () => {
    assertSplitInvariant(redactAll, '-----BEGIN OPENSSH PRIVATE KEY-----\r\nuser@host:~$ ', '[redacted:private_key]\r\nuser@host:~$ ');
  });
});

describe('stream masking: holding back', () => {
  it('emits text that cannot start a match at once and holds only the undecided tail', () => {
    const plan = compileMaskPlan([{ detector: 'card', strategy: 'redact' }]);
    const sm = createStreamMasker(plan);
    assert.equal(sm.push(Buffer.from('total: 12 rows\r\nuser$ ')).toString(), 'total: 12 rows\r\nuser$ ');
    assert.equal(sm.pendingBytes(), 0);
    assert.equal(sm.push(Buffer.from('card 4111 1111')).toString(), 'card ');
    assert.equal(sm.pendingBytes(), 9);
    assert.equal(sm.push(Buffer.from(' 1111 1111\n')).toString(), '[redacted:card]\n');
    assert.equal(sm.pendingBytes(), 0);
  });
  it('idle flush releases a prompt but keeps an unfinished BEGIN line', () => {
    const sm = createStreamMasker(redactAll);
    assert.equal(sm.push(Buffer.from('login: alice')).toString(), 'login: ');
    assert.equal(sm.flush('idle').toString(), 'alice');
    assert.equal(sm.push(Buffer.from('\r\n-----BEGIN RSA PRIV')).toString(), '\r\n');
    assert.equal(sm.flush('idle').toString(), '');
    assert.equal(sm.push(Buffer.from('ATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\nok\n')).toString(), '[redacted:private_key]\nok\n');
  });
  it('keeps memory bounded on a long stream and redacts an oversized held value', () => {
    const sm = createStreamMasker(redactAll, { maxHoldBytes: 4096 });
    const line = Buffer.from('2024-01-15 10:30:00 INFO order 1234567890123456 shipped to jane@example.com\n');
    let outBytes = 0;
    let maxPending = 0;
    for (let i = 0; i < 20000; i++) {
      outBytes += sm.push(line).length;
      maxPending = Math.max(maxPending, sm.pendingBytes());
    }
    outBytes += sm.flush().length;
    assert.ok(maxPending <= 400, `pending ${maxPending}`);
    assert.equal(sm.counts()['detector:email'], 20000);
    assert.equal(outBytes, 20000 * (line.length - 'jane@example.com'.length + '[redacted:email]'.length));
    // a JWT-looking token longer than the hold limit
    const sm2 = createStreamMasker(redactAll, { maxHoldBytes: 4096 });
    const out: Buffer[] = [sm2.push(Buffer.from('t=eyJ'))];
    for (let i = 0; i < 100; i++) {
      out.push(sm2.push(Buffer.from('A'.repeat(100))));
      assert.ok(sm2.pendingBytes() <= 4096 + 100);
    }
    out.push(sm2.push(Buffer.from(' end\n')), sm2.flush());
    assert.equal(Buffer.concat(out).toString(), 't=[redacted:overflow] end\n');
    assert.equal(sm2.counts().overflow, 1);
  });
  it('passes binary data through byte for byte', () => {
    const bin = Buffer.alloc(70000);
    for (let i = 0; i < bin.length; i++) bin[i] = (i * 7919 + (i >> 8)) & 0xff;
    const noDigitsPlan = compileMaskPlan([{ detector: 'jwt', strategy: 'redact' }]);
    assert.ok(maskBytes(noDigitsPlan, bin).equals(bin));
    const sm = createStreamMasker(noDigitsPlan);
    const out: Buffer[] = [];
    for (let i = 0; i < bin.length; i += 1000) out.push(sm.push(bin.subarray(i, i + 1000)));
    out.push(sm.flush());
    assert.ok(Buffer.concat(out).equals(bin));
  });
  it('null strategy redacts in a stream; partial and hash work across chunks', () => {
    const plan = compileMaskPlan(
      [
        { detector: 'card', strategy: 'partial' },
        { detector: 'email', strategy: 'hash' },
        { detector: 'ssn', strategy: 'null' },
      ],
      { hashKey: 'hex:' + '11'.repeat(32) },
    );
    const out = masked(plan, Buffer.from('4111-1111-1111-1111 bob@example.com 123-45-6789'), [7, 23]).toString();
    assert.match(out, /^4000-0000-0006-1111 tok_[a-z2-7]{32} \[redacted:ssn\]$/);
  });
});

describe('stream masking: property test', () => {
  const PIECES = [
    'hello', 'world', ' ', ' ', '\n', '\r\n', '\t', '-', '.', ',', ':', '=', '"', '(', ')', '+', '@', '/', '_',
    '0', '1', '12', '415', '2024-01-15', '10:30:00', '192.168.1.1', 'v1.2.3', '123e4567-e89b-12d3-a456-426614174000',
    '4111 1111 1111 1111', '4111111111111111', '5500-0000-0000-0004', '4111111111111112', '3782 822463 10005',
    'jane.doe@example.com', 'x@y.io', 'icon@2x.png', '+1 415 555 2671', '(415) 555-2671', '123-45-6789', '666-12-3456',
    'DE89 3704 0044 0532 0130 00', 'GB82WEST12345698765432', 'AKIAIOSFODNN7EXAMPLE', 'aws_secret_access_key=',
    'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'ghp_16C7e42F292c6912E7710c838347Ae178B4a',
    'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.sig', 'eyJ', '-----BEGIN RSA PRIVATE KEY-----', '-----END RSA PRIVATE KEY-----',
    'MIIEowIBAAKCAQEA', 'Zoë', '💳', '✓', '\x1b[31m', '\x1b[0m', '\x1b[2J', '\x1b]0;title\x07', '-----',
  ];
  it('random text with embedded secrets, cut at random points, masks exactly like the whole text', () => {
    const plans = [
      redactAll,
      compileMaskPlan(
        DETECTORS.map((d) => ({ detector: d, strategy: d === 'card' || d === 'email' ? 'partial' : 'hash' })),
        { hashKey: 'a-test-key-of-32-bytes-length!!!' },
      ),
      // each detector alone: its own hold-back must be sufficient
      ...DETECTORS.map((d) => compileMaskPlan([{ detector: d, strategy: 'redact' }])),
    ];
    const r = xorshift32(0xc0ffee);
    let checked = 0;
    for (let iter = 0; iter < 1000; iter++) {
      const plan = plans[iter % plans.length]!;
      let text = '';
      const n = 1 + Math.floor(r() * 40);
      for (let k = 0; k < n; k++) text += PIECES[Math.floor(r() * PIECES.length)]!;
      const input = Buffer.from(text);
      const whole = maskBytes(plan, input);
      for (let t = 0; t < 5; t++) {
        const cuts: number[] = [];
        for (let i = 1; i < input.length; i++) if (r() < 0.15) cuts.push(i);
        const got = masked(plan, input, cuts);
        checked++;
        if (!got.equals(whole)) {
          assert.fail(
            `seed iteration ${iter}: cuts ${JSON.stringify(cuts)}\ninput ${JSON.stringify(text)}\nwhole ${JSON.stringify(whole.toString('latin1'))}\ngot   ${JSON.stringify(got.toString('latin1'))}`,
          );
        }
      }
    }
    assert.equal(checked, 5000);
  });
  it('the whole-stream result equals value masking of the same text (no escapes)', () => {
    const r = xorshift32(42);
    for (let iter = 0; iter < 300; iter++) {
      let text = '';
      const n = 1 + Math.floor(r() * 30);
      for (let k = 0; k < n; k++) {
        const p = PIECES[Math.floor(r() * PIECES.length)]!;
        if (!p.includes('\x1b')) text += p;
      }
      const viaStream = maskBytes(redactAll, Buffer.from(text)).toString('utf8');
      assert.equal(viaStream, redactAll.maskText(text).text, JSON.stringify(text));
    }
  });
});
