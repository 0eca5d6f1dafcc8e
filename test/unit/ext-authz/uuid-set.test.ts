import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { UuidSet, parseUuid } from '../../../ext-authz/uuid-set.ts';

describe('UuidSet (decision ids without per-entry objects)', () => {
  it('agrees with a Set over 50,000 random ids through growth, for members and non-members', () => {
    const set = new UuidSet(1 << 20, 16);
    const ref = new Set<string>();
    for (let i = 0; i < 50_000; i++) {
      const id = randomUUID();
      assert.equal(set.add(id), true);
      ref.add(id);
    }
    assert.equal(set.size, 50_000);
    for (const id of ref) assert.equal(set.has(id), true, id);
    for (let i = 0; i < 50_000; i++) assert.equal(set.has(randomUUID()), false);
  });

  it('counts an id added twice once', () => {
    const set = new UuidSet();
    const id = randomUUID();
    set.add(id);
    set.add(id);
    assert.equal(set.size, 1);
  });

  it('refuses what is not a canonical lowercase UUID, and the nil UUID', () => {
    const set = new UuidSet();
    const id = randomUUID();
    for (const bad of [
      '',
      'd1',
      id.toUpperCase(),
      id.replace(/-/g, ''),
      id.slice(0, 35),
      `${id}0`,
      id.replace('-', '_'),
      id.slice(0, 5) + 'g' + id.slice(6),
      id.slice(0, 5) + 'é' + id.slice(6),
      '00000000-0000-0000-0000-000000000000',
    ]) {
      assert.equal(set.add(bad), false, bad);
      assert.equal(set.has(bad), false, bad);
    }
    assert.equal(set.size, 0);
  });

  it('parses the words of a UUID', () => {
    const out = new Int32Array(4);
    assert.equal(parseUuid('01234567-89ab-cdef-0123-456789abcdef', out), true);
    assert.deepEqual([...new Uint32Array(out.buffer)], [0x01234567, 0x89abcdef, 0x01234567, 0x89abcdef]);
    assert.equal(parseUuid('ffffffff-ffff-ffff-ffff-ffffffffffff', out), true);
    assert.deepEqual([...new Uint32Array(out.buffer)], [0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff]);
  });

  it('stops at its limit (add returns false) and keeps what it holds', () => {
    const set = new UuidSet(100, 8);
    const ids = Array.from({ length: 100 }, () => randomUUID());
    for (const id of ids) assert.equal(set.add(id), true);
    assert.equal(set.add(randomUUID()), false);
    assert.equal(set.add(ids[0]!), true, 'an id already held is still "added"');
    for (const id of ids) assert.equal(set.has(id), true);
  });

  it('clear() forgets everything and the set is usable again', () => {
    const set = new UuidSet(1 << 20, 16);
    const before = Array.from({ length: 1000 }, () => randomUUID());
    for (const id of before) set.add(id);
    set.clear();
    assert.equal(set.size, 0);
    for (const id of before) assert.equal(set.has(id), false);
    const after = randomUUID();
    set.add(after);
    assert.equal(set.has(after), true);
  });
});
