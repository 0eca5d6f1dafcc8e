import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LineDiscipline, type LineEvent } from '../../../sidecar/ssh/line-discipline.ts';

const lines = (evs: LineEvent[]) => evs.filter((e) => e.type === 'line').map((e) => (e as { line: string }).line);
const echo = (evs: LineEvent[]) => evs.filter((e) => e.type === 'echo').map((e) => (e as { data: string }).data).join('');

describe('line discipline', () => {
  test('collects a line and echoes it', () => {
    const ld = new LineDiscipline();
    const evs = ld.feed('ls -l\r');
    assert.equal(echo(evs), 'ls -l');
    assert.deepEqual(lines(evs), ['ls -l']);
    const line = evs.find((e) => e.type === 'line') as { erase: string };
    assert.equal(line.erase, '\x1b[5D\x1b[K');
  });

  test('CRLF split across feeds is one Enter', () => {
    const ld = new LineDiscipline();
    assert.deepEqual(lines(ld.feed('a\r')), ['a']);
    assert.deepEqual(lines(ld.feed('\nb\n')), ['b']);
  });

  test('backspace, ^U, ^W', () => {
    const ld = new LineDiscipline();
    assert.deepEqual(lines(ld.feed('abX\x7fc\r')), ['abc']);
    assert.deepEqual(lines(ld.feed('junk\x15ok\r')), ['ok']);
    assert.deepEqual(lines(ld.feed('rm -rf\x17\x17echo hi\r')), ['echo hi']);
  });

  test('left/right/home/end/delete edit in the middle', () => {
    const ld = new LineDiscipline();
    assert.deepEqual(lines(ld.feed('ac\x1b[Db\r')), ['abc']);
    assert.deepEqual(lines(ld.feed('bc\x1b[Ha\x1b[Fd\r')), ['abcd']);
    assert.deepEqual(lines(ld.feed('abXc\x1b[D\x1b[D\x1b[3~\r')), ['abc']);
    assert.deepEqual(lines(ld.feed('ac\x1bODb\r')), ['abc']);
  });

  test('escape sequences split across feeds', () => {
    const ld = new LineDiscipline();
    ld.feed('ac\x1b');
    ld.feed('[');
    assert.deepEqual(lines(ld.feed('Db\r')), ['abc']);
  });

  test('history keys and tab are ignored', () => {
    const ld = new LineDiscipline();
    const evs = ld.feed('ls\x1b[A\x1b[B\t\r');
    assert.deepEqual(lines(evs), ['ls']);
    assert.ok(echo(evs).includes('\x07'));
  });

  test('^C drops the line; ^D on an empty line is EOF, else ignored', () => {
    const ld = new LineDiscipline();
    const evs = ld.feed('rm -rf /\x03');
    assert.deepEqual(lines(evs), []);
    assert.equal(evs.at(-1)?.type, 'interrupt');
    assert.equal(ld.pending, '');
    assert.deepEqual(ld.feed('x\x04').map((e) => e.type), ['echo']);
    ld.feed('\x15');
    assert.deepEqual(ld.feed('\x04').map((e) => e.type), ['eof']);
  });

  test('UTF-8 split across feeds', () => {
    const ld = new LineDiscipline();
    const b = Buffer.from('echo ✓\r');
    ld.feed(b.subarray(0, 6));
    assert.deepEqual(lines(ld.feed(b.subarray(6))), ['echo ✓']);
  });

  test('pasted text with several lines submits each', () => {
    const ld = new LineDiscipline();
    assert.deepEqual(lines(ld.feed('\x1b[200~a\nb\n\x1b[201~')), ['a', 'b']);
  });
});
