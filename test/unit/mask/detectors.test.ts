import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cardIinValid, compileMaskPlan, createDetectors, findMatches, ibanMod97Valid, luhnValid } from '../../../core/mask/index.ts';
import type { DetectorName } from '../../../core/policy-contract.ts';

const detectors = createDetectors();

/** What each detector finds in `text`, as the matched substrings. */
function found(name: DetectorName, text: string): string[] {
  return findMatches(text, [detectors[name]]).map((m) => text.slice(m.start, m.end));
}

function positive(name: DetectorName, cases: [text: string, match: string][]) {
  for (const [text, match] of cases) assert.deepEqual(found(name, text), [match], `${name} should find ${JSON.stringify(match)} in ${JSON.stringify(text)}`);
}

function negative(name: DetectorName, cases: string[]) {
  for (const text of cases) assert.deepEqual(found(name, text), [], `${name} must not match ${JSON.stringify(text)}`);
}

/** Values a gateway sees all day that no detector may touch. */
const EVERYDAY = [
  '1700000000000', // ms timestamp
  '1700000000123456', // us timestamp
  '2024-01-15T10:30:00.123Z',
  '2024-01-15 10:30:00',
  '123e4567-e89b-12d3-a456-426614174000',
  '550e8400-e29b-41d4-a716-446655440000',
  '192.168.100.200',
  '10.0.0.1:5432',
  'fe80::1ff:fe23:4567:890a',
  'v1.22.2',
  '1.2.3-beta.4',
  'order 1234567890123456', // 16 digits, not Luhn-valid
  'id 9223372036854775807', // int8 max
  'snowflake 1541815603606036480',
  '0.4111111111111111',
  'sha 3b18e512dba79e4c8300dd08aeb37f8e728b8dad',
  'price 1,234,567.89',
  'icon@2x.png and logo@3x.svg',
  'npm i pkg@1.2.3',
  '@types/node',
  'git@github.com:org/repo.git',
  'phone? 12345678',
  'SELECT * FROM t WHERE id = 42',
  'AKIA too short',
  'eyJub3QiOiJhIGp3dCJ9 alone',
];

describe('card', () => {
  it('finds Luhn-valid numbers with and without separators', () => {
    positive('card', [
      ['4111111111111111', '4111111111111111'],
      ['card: 4111 1111 1111 1111.', '4111 1111 1111 1111'],
      ['5500-0000-0000-0004 exp 12/25', '5500-0000-0000-0004'],
      ['amex 3782 822463 10005', '3782 822463 10005'],
      ['"4012888888881881"', '4012888888881881'],
      ['visa (13 digits): 4222222222222', '4222222222222'],
      ['2221 0000 0000 0009', '2221 0000 0000 0009'],
      ['6011111111111117', '6011111111111117'],
      ['4111 1111 1111 1111 12/25', '4111 1111 1111 1111'],
      ['4111 1111 1111 1111 1234 trailing group', '4111 1111 1111 1111'],
    ]);
  });
  it('rejects non-Luhn ids, unknown IINs, decimals, digits glued to words', () => {
    negative('card', [
      '4111111111111112',
      '1234567812345678', // Luhn-valid? no; and IIN 1 is not a card network
      '0000000000000000',
      '9999999999999995',
      'x4111111111111111',
      '4111111111111111abc',
      '4111111111111111.50',
      '4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1',
      '41111111111111111111',
      ...EVERYDAY,
    ]);
  });
  it('IIN and Luhn helpers', () => {
    assert.equal(luhnValid('79927398713'), true);
    assert.equal(luhnValid('79927398710'), false);
    assert.equal(cardIinValid('4111111111111111'), true);
    assert.equal(cardIinValid('378282246310005'), true);
    assert.equal(cardIinValid('3782822463100050'), false); // amex is 15 digits
    assert.equal(cardIinValid('1111111111111111'), false);
  });
  it('cardIin: false accepts any Luhn-valid 13-19 digit number', () => {
    const d = createDetectors({ cardIin: false });
    const ms = findMatches('id 1111111111111117', [d.card]);
    assert.equal(ms.length, 1);
  });
});

describe('email', () => {
  it('finds addresses', () => {
    positive('email', [
      ['mail jane.doe@example.com.', 'jane.doe@example.com'],
      ['<bob+tag@mail.example.co.uk>', 'bob+tag@mail.example.co.uk'],
      ['"x_y%z@sub-domain.example.io"', 'x_y%z@sub-domain.example.io'],
    ]);
  });
  it('rejects look-alikes', () => {
    negative('email', ['user@localhost', 'a@b', '@example.com', 'user@10.0.0.1', ...EVERYDAY]);
  });
});

describe('phone', () => {
  it('finds E.164 and NANP formats', () => {
    positive('phone', [
      ['call +14155552671 now', '+14155552671'],
      ['+1 415 555 2671', '+1 415 555 2671'],
      ['+44 20 7946 0958', '+44 20 7946 0958'],
      ['+49 (30) 1234567', '+49 (30) 1234567'],
      ['(415) 555-2671', '(415) 555-2671'],
      ['415-555-2671', '415-555-2671'],
      ['415.555.2671', '415.555.2671'],
      ['1-800-555-0199', '1-800-555-0199'],
    ]);
  });
  it('rejects plain integers, dates, IPs and versions', () => {
    negative('phone', ['4155552671', '415-555.2671', '+123', '+1234567', 'a+14155552671', '2024-01-15', '1.2.3.4', ...EVERYDAY]);
  });
});

describe('ssn', () => {
  it('finds valid SSNs', () => {
    positive('ssn', [
      ['ssn 123-45-6789', '123-45-6789'],
      ['078 05 1120', '078 05 1120'],
    ]);
  });
  it('applies the invalid-range rules', () => {
    negative('ssn', ['000-12-3456', '666-12-3456', '900-12-3456', '999-99-9999', '123-00-4567', '123-45-0000', '123456789', '123-45-67890', '1123-45-6789', ...EVERYDAY]);
  });
});

describe('iban', () => {
  it('finds IBANs (country length + mod-97)', () => {
    positive('iban', [
      ['DE89370400440532013000', 'DE89370400440532013000'],
      ['iban DE89 3704 0044 0532 0130 00 EUR', 'DE89 3704 0044 0532 0130 00'],
      ['GB82 WEST 1234 5698 7654 32', 'GB82 WEST 1234 5698 7654 32'],
      ['NO9386011117947', 'NO9386011117947'],
    ]);
    assert.equal(ibanMod97Valid('GB82WEST12345698765432'), true);
  });
  it('rejects bad checksums, wrong lengths and unknown countries', () => {
    negative('iban', ['DE89370400440532013001', 'DE8937040044053201300', 'XX89370400440532013000', 'de89370400440532013000', ...EVERYDAY]);
  });
});

describe('jwt', () => {
  const jwt =
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
  it('finds tokens whose header is JSON with alg', () => {
    positive('jwt', [
      [`Authorization: Bearer ${jwt}`, jwt],
      ['eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.', 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.'],
    ]);
  });
  it('rejects three dotted base64 segments that are not a JWT', () => {
    negative('jwt', ['eyJub3QiOiJhbGcifQ.eyJ4IjoxfQ.sig', 'eyJ.e30.x', 'abc.def.ghi', `x${jwt}`, ...EVERYDAY]);
  });
});

describe('cloud_key', () => {
  it('finds provider keys', () => {
    positive('cloud_key', [
      ['AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE', 'AKIAIOSFODNN7EXAMPLE'],
      ['ASIAY34FZKBOKMUTVV7A', 'ASIAY34FZKBOKMUTVV7A'],
      ['aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
      ['"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'],
      ['key=AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe', 'AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe'],
      ['ghp_16C7e42F292c6912E7710c838347Ae178B4a', 'ghp_16C7e42F292c6912E7710c838347Ae178B4a'],
      [`github_pat_11ABCDEFG0${'a'.repeat(72)}`, `github_pat_11ABCDEFG0${'a'.repeat(72)}`],
      ['xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx', 'xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx'],
      ['sk_live_4eC39HqLyjWDarjtT1zdp7dc', 'sk_live_4eC39HqLyjWDarjtT1zdp7dc'],
    ]);
  });
  it('rejects near misses', () => {
    negative('cloud_key', [
      'AKIAIOSFODNN7EXAMPL', // 19 chars
      'akiaiosfodnn7example',
      'XAKIAIOSFODNN7EXAMPLE',
      'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', // a 40-char base64 value without its name
      'sk_test_4eC39HqLyjWDarjtT1zdp7dc',
      'ghp_short',
      ...EVERYDAY,
    ]);
  });
});

describe('private_key', () => {
  const key = ['-----BEGIN RSA PRIVATE KEY-----', 'MIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB', 'aFDrBz9vFqU4yV==', '-----END RSA PRIVATE KEY-----'].join('\n');
  it('masks the whole block', () => {
    positive('private_key', [
      [`key:\n${key}\nafter`, key],
      ['-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3BlbnNzaC1rZXktdjE=\r\n-----END OPENSSH PRIVATE KEY-----', '-----BEGIN OPENSSH PRIVATE KEY-----\r\nb3BlbnNzaC1rZXktdjE=\r\n-----END OPENSSH PRIVATE KEY-----'],
      ['-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nabc\n', '-----BEGIN PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nabc\n'],
    ]);
  });
  it('ends a block without END line at the first line that is not key material', () => {
    const text = '-----BEGIN RSA PRIVATE KEY-----\r\nMIIEow\r\nuser@host:~$ ls';
    assert.deepEqual(found('private_key', text), ['-----BEGIN RSA PRIVATE KEY-----\r\nMIIEow']);
  });
  it('leaves public keys and certificates alone', () => {
    negative('private_key', ['-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----', '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----']);
  });
});

describe('all detectors together', () => {
  const plan = compileMaskPlan(
    (['card', 'email', 'phone', 'ssn', 'iban', 'jwt', 'cloud_key', 'private_key'] as const).map((d) => ({ detector: d, strategy: 'redact' as const })),
  );
  it('leave everyday values untouched', () => {
    for (const v of EVERYDAY) assert.equal(plan.maskText(v).text, v, JSON.stringify(v));
  });
  it('mask several findings in one value, never overlapping', () => {
    const r = plan.maskText('to jane@example.com card 4111-1111-1111-1111 ssn 123-45-6789 tel +1 415 555 2671');
    assert.equal(r.text, 'to [redacted:email] card [redacted:card] ssn [redacted:ssn] tel [redacted:phone]');
    assert.equal(r.findings, 4);
  });
});
