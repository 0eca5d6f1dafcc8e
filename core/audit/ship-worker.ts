/**
 * Worker-thread entry of a threaded shipper (see core/audit/ship-thread.ts):
 * runs an ordinary in-thread Shipper with its own ClickHouse client and
 * reports progress, log lines and damage to the parent.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { FromWorker, ShipWorkerData, ToWorker } from './ship-thread.ts';
import { Shipper } from './shipper.ts';
import { ClickHouseStore } from './store.ts';

const port = parentPort!;
const data = workerData as ShipWorkerData;
const send = (m: FromWorker) => port.postMessage(m);

function forwardLogger(base: Record<string, unknown> = {}): Logger {
  const at =
    (level: 'debug' | 'info' | 'warn' | 'error') =>
    (msg: string, fields?: Record<string, unknown>): void =>
      send({ type: 'log', level, msg, fields: { ...base, ...fields } });
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (f) => forwardLogger({ ...base, ...f }) };
}

const store = new ClickHouseStore(data.connection);
const shipper = new Shipper({
  ...data.options,
  store,
  thread: false,
  log: forwardLogger(),
  onDamage: (report) => send({ type: 'damage', report }),
  onProgress: (progress) => send({ type: 'progress', progress }),
});

async function reply(id: number, fn: () => Promise<unknown>): Promise<void> {
  try {
    const value = await fn();
    send({ type: 'reply', id, ok: true, value });
  } catch (e) {
    send({ type: 'reply', id, ok: false, error: errorMessage(e) });
  }
}

port.on('message', (m: ToWorker) => {
  switch (m.op) {
    case 'start':
      shipper.start();
      break;
    case 'stop':
      void reply(m.id, async () => {
        await shipper.stop();
        await store.close();
      });
      break;
    case 'drain':
      void reply(m.id, () => shipper.drain(...m.args));
      break;
    case 'shipOnce':
      void reply(m.id, () => shipper.shipOnce());
      break;
  }
});
