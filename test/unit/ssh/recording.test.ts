import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { AsciicastRecorder, castOutput, FileRecordingSink, parseAsciicast, replayAsciicast } from '../../../sidecar/ssh/recording.ts';

describe('asciicast v2 recording', () => {
  test('header, output/input/resize events, UTF-8 split across chunks, replay', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tg-cast-'));
    try {
      const sink = new FileRecordingSink(dir);
      const rec = new AsciicastRecorder(sink, 's1-1', { width: 120, height: 40, title: 'shell', env: { TERM: 'xterm' } });
      const check = Buffer.from('ok ✓\r\n');
      rec.output(check.subarray(0, 4));
      rec.output(check.subarray(4));
      rec.input('ls\r');
      rec.resize(100, 30);
      rec.output('\x1b[1mbold\x1b[0m');
      await rec.close();
      await sink.finish('s1-1');
      const text = await sink.asciicast('s1-1');
      const { header, events } = parseAsciicast(text);
      assert.equal(header.version, 2);
      assert.equal(header.width, 120);
      assert.equal(header.height, 40);
      assert.equal(header.env?.TERM, 'xterm');
      assert.ok(typeof (header as { timestamp?: number }).timestamp === 'number');
      assert.deepEqual(events.map((e) => e.code), ['o', 'o', 'i', 'r', 'o']);
      assert.equal(events[3]?.data, '100x30');
      assert.equal(castOutput(text), 'ok ✓\r\n\x1b[1mbold\x1b[0m');
      let played = '';
      await replayAsciicast(text, (d) => (played += d), { speed: Infinity });
      assert.equal(played, castOutput(text));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('replay keeps timing, scaled by speed and capped by the idle limit', async () => {
    const text = ['{"version":2,"width":80,"height":24}', '[0.0,"o","a"]', '[0.3,"o","b"]', '[5.0,"o","c"]'].join('\n');
    const t0 = performance.now();
    let out = '';
    await replayAsciicast(text, (d) => (out += d), { speed: 2, idleLimit: 0.2 });
    const ms = performance.now() - t0;
    assert.equal(out, 'abc');
    assert.ok(ms >= 180 && ms < 1000, `took ${ms} ms`);
  });

  test('malformed recordings and unsafe ids are rejected', async () => {
    assert.throws(() => parseAsciicast(''), /empty/);
    assert.throws(() => parseAsciicast('{"version":1}'), /unsupported/);
    assert.throws(() => parseAsciicast('{"version":2}\n[1,2]'), /not an asciicast event/);
    const sink = new FileRecordingSink('/tmp');
    assert.throws(() => sink.path('../etc/passwd'), /invalid session id/);
    await assert.rejects(sink.asciicast('does-not-exist'), /no recording/);
  });
});
