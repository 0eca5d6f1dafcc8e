import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLoopback, StartupError, taskFromStartup } from '../../../sidecar/postgres/startup.ts';

describe('startup parameters', () => {
  it('task id from options (-c taskgate.task=...), forwarding allowed settings', () => {
    const r = taskFromStartup({ user: 'a', database: 'd', options: '-c taskgate.task=OPS-123 -c statement_timeout=5s', application_name: 'psql' });
    assert.equal(r.task_id, 'OPS-123');
    assert.deepEqual(r.forward, { application_name: 'psql', statement_timeout: '5s' });
  });

  it('task id from application_name taskgate:<id>; the marker is removed before forwarding', () => {
    const r = taskFromStartup({ user: 'a', application_name: 'myapp taskgate:OPS-9' });
    assert.equal(r.task_id, 'OPS-9');
    assert.equal(r.forward.application_name, 'myapp');
    assert.equal(taskFromStartup({ user: 'a', fallback_application_name: 'taskgate:OPS-8' }).task_id, 'OPS-8');
    assert.equal(taskFromStartup({ user: 'a', options: '-c taskgate.task=A', application_name: 'taskgate:B' }).task_id, 'A', 'options win');
  });

  it('refuses settings that could change identity or bypass policy', () => {
    for (const options of ['-c role=postgres', '-c session_authorization=postgres', '-c default_transaction_read_only=off -c search_path=x -c jit=on']) {
      assert.throws(() => taskFromStartup({ user: 'a', options }), (e: unknown) => e instanceof StartupError && e.sqlstate === '42501');
    }
    assert.throws(() => taskFromStartup({ user: 'a', role: 'x' }), StartupError);
    assert.throws(() => taskFromStartup({ user: 'a', options: '-x' }), (e: unknown) => e instanceof StartupError && e.sqlstate === '08P01');
  });

  it('no task id is reported as such', () => {
    assert.equal(taskFromStartup({ user: 'a' }).task_id, undefined);
    assert.equal(taskFromStartup({ user: 'a', options: '-c taskgate.task=' }).task_id, undefined);
  });

  it('loopback detection', () => {
    assert.ok(isLoopback('127.0.0.1'));
    assert.ok(isLoopback('::ffff:127.0.0.5'));
    assert.ok(isLoopback('::1'));
    assert.ok(!isLoopback('10.0.0.1'));
    assert.ok(!isLoopback('::ffff:10.0.0.1'));
    assert.ok(!isLoopback(undefined));
  });
});
