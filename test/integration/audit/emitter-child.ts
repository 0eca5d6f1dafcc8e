/**
 * A sidecar stand-in for the SIGKILL test: emits audit events as fast as it
 * can and, after each flush, prints the acknowledged (fsynced) sequence number.
 * Usage: node --import tsx emitter-child.ts <spool-dir>
 */
import { SpoolAuditSink } from '../../../core/audit/spool-sink.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: emitter-child.ts <spool-dir>');
const sink = await SpoolAuditSink.open({ dir, fsync: 'always', maxBatch: 256 });
let i = 0;
for (;;) {
  for (let k = 0; k < 300; k++) {
    sink.emit({ type: 'command', task_id: 'OPS-KILL', subject: 'child', command: `echo ${i++}`, protocol: 'ssh' });
  }
  await sink.flush();
  process.stdout.write(`ack ${sink.acknowledgedSeq}\n`);
}
