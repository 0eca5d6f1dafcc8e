import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { analyzeShell } from '../../../sidecar/ssh/shell-parse.ts';
import { execRequest } from '../../../sidecar/ssh/request.ts';

const names = (cmd: string) => analyzeShell(cmd).programs.map((p) => p.name);
const find = (cmd: string, name: string) => analyzeShell(cmd).programs.find((p) => p.name === name);

describe('shell command analysis', () => {
  const cases: [string, string[], string][] = [
    ['ls -la /tmp', ['ls'], 'top'],
    ['ls; rm -rf /tmp/x', ['ls', 'rm'], 'top'],
    ['true && rm a || rm b', ['true', 'rm', 'rm'], 'top'],
    ['cat f | grep x | rm y', ['cat', 'grep', 'rm'], 'pipe'],
    ['(cd /; rm x)', ['cd', 'rm'], 'subshell'],
    ['{ rm x; }', ['rm'], 'top'],
    ['echo $(rm x)', ['rm', 'echo'], 'substitution'],
    ['echo `rm x`', ['rm', 'echo'], 'substitution'],
    ['echo "in $(rm x) quotes"', ['rm', 'echo'], 'substitution'],
    ['X=$(rm x)', ['rm'], 'substitution'],
    ['diff <(rm a) >(rm b)', ['rm', 'rm', 'diff'], 'process_substitution'],
    ['sudo rm x', ['sudo', 'rm'], 'sudo'],
    ['sudo -u root -E rm x', ['sudo', 'rm'], 'sudo'],
    ['sudo --user=root rm x', ['sudo', 'rm'], 'sudo'],
    ['env A=1 B=2 rm x', ['env', 'rm'], 'env'],
    ['env -i -u HOME rm x', ['env', 'rm'], 'env'],
    ['env -S "rm x"', ['env', 'rm'], 'env'],
    ['bash -c "rm x"', ['bash', 'rm'], 'bash_c'],
    ["sh -ec 'ls; rm x'", ['sh', 'ls', 'rm'], 'bash_c'],
    ['bash -lc "sudo rm x"', ['bash', 'sudo', 'rm'], 'bash_c'],
    ['/bin/bash -c "rm x"', ['bash', 'rm'], 'bash_c'],
    ['su root -c "rm x"', ['su', 'rm'], 'su'],
    ['xargs rm < list', ['xargs', 'rm'], 'xargs'],
    ['find . -name "*.log" -exec rm -f {} +', ['find', 'rm'], 'find_exec'],
    ['find . -execdir rm {} \\;', ['find', 'rm'], 'find_exec'],
    ['nohup rm x &', ['nohup', 'rm'], 'nohup'],
    ['timeout -s KILL 5 rm x', ['timeout', 'rm'], 'timeout'],
    ['nice -n 10 ionice -c3 rm x', ['nice', 'ionice', 'rm'], 'ionice'],
    ['eval "rm x"', ['eval', 'rm'], 'eval'],
    ['bash <<EOF\nrm x\nEOF', ['bash', 'rm'], 'heredoc'],
    ["sh <<< 'rm x'", ['sh', 'rm'], 'heredoc'],
    ['for f in *; do rm "$f"; done', ['rm'], 'compound'],
    ['if true; then rm x; fi', ['true', 'rm'], 'compound'],
    ['while read l; do rm "$l"; done < f', ['read', 'rm'], 'compound'],
    ['case x in x) rm y;; esac', ['rm'], 'compound'],
    ['f() { rm x; }; f', ['rm', 'f'], 'function'],
    ['cat <<EOF\n$(rm x)\nEOF', ['rm', 'cat'], 'heredoc'],
    ['sh -c "bash -c \\"rm deep\\""', ['sh', 'bash', 'rm'], 'bash_c'],
  ];
  for (const [cmd, want, via] of cases) {
    test(`${cmd.replace(/\n/g, '\\n')} runs ${want.join(', ')}`, () => {
      const a = analyzeShell(cmd);
      assert.equal(a.unparseable, undefined, a.parse_error);
      assert.deepEqual(names(cmd), want);
      assert.ok(a.programs.find((p) => p.name === 'rm')?.via.includes(via) ?? a.programs.some((p) => p.via.includes(via)), `via ${via}: ${JSON.stringify(a.programs)}`);
    });
  }

  test('quoted text is data, not a program', () => {
    assert.deepEqual(names("echo 'rm -rf /'"), ['echo']);
    assert.deepEqual(names('echo "rm -rf /" # rm'), ['echo']);
    assert.deepEqual(names("grep 'sudo rm' log"), ['grep']);
  });

  test('argv is unquoted and unescaped; paths keep the path', () => {
    const p = find(`/usr/bin/cat "a b" 'c d' e\\ f`, 'cat');
    assert.deepEqual(p?.argv, ['/usr/bin/cat', 'a b', 'c d', 'e f']);
    assert.equal(p?.path, '/usr/bin/cat');
    assert.deepEqual(analyzeShell('echo $(id) done').argv, ['echo', '$(id)', 'done']);
  });

  test('program names built from expansions are reported as dynamic', () => {
    assert.equal(find('$X a', '$X')?.dynamic, true);
    assert.equal(analyzeShell('"$(echo rm)" a').programs.find((p) => p.name === '$(echo rm)')?.dynamic, true);
    const d = analyzeShell('$(echo rm) x').programs.find((p) => p.dynamic);
    assert.equal(d?.name, '$(echo rm)');
    assert.equal(analyzeShell('bash -c "$CMD"').programs.find((p) => p.dynamic)?.name, '$CMD');
    assert.equal(analyzeShell('${PREFIX}rm x').programs[0]?.dynamic, true);
  });

  test('redirects are listed', () => {
    const a = analyzeShell('cat < in > /etc/passwd 2>>err');
    assert.deepEqual(a.redirects, [
      { op: '<', target: 'in' },
      { op: '>', target: '/etc/passwd' },
      { op: '2>>', target: 'err' },
    ]);
  });

  test('what cannot be parsed is unparseable (fail closed)', () => {
    for (const bad of ['echo "unterminated', 'echo )', 'if true; then', 'a |', "bash -c 'echo \"x'"]) {
      const a = analyzeShell(bad);
      assert.equal(a.unparseable, true, bad);
      assert.ok(a.parse_error, bad);
    }
    assert.equal(analyzeShell('a\0b').unparseable, true);
  });

  test('nesting is bounded', () => {
    let cmd = 'rm x';
    for (let i = 0; i < 12; i++) cmd = `sh -c ${JSON.stringify(cmd)}`;
    assert.equal(analyzeShell(cmd).unparseable, true);
  });

  test('non-ASCII text keeps byte offsets right', () => {
    const a = analyzeShell('echo "héllo ✓" $(rm "日本")');
    assert.deepEqual(a.programs.find((p) => p.name === 'rm')?.argv, ['rm', '日本']);
    assert.deepEqual(a.argv, ['echo', 'héllo ✓', '$(rm "日本")']);
  });

  test('scp server side is kind scp; other exec is exec', () => {
    assert.equal(execRequest('scp -t /tmp/x').kind, 'scp');
    assert.equal(execRequest('scp -r -f /etc').kind, 'scp');
    assert.equal(execRequest('scp a b').kind, 'exec');
    assert.equal(execRequest('ls', 'shell_line').kind, 'shell_line');
  });
});
