/**
 * Port forwarding through the sidecar: local forwards (`ssh -L`, channel
 * `direct-tcpip`, kind `port_forward`) and remote forwards (`ssh -R`, global
 * request `tcpip-forward`, kind `remote_forward`). Each is decided by the
 * policy with the target host and port; denied unless the task type allows.
 * Connection-level requests carry no session env: the task comes from the login.
 */
import type { ClientChannel } from 'ssh2';
import { errorMessage } from '../../core/errors.ts';
import { forwardRequest } from './request.ts';
import type { SshConnection } from './server.ts';

export function handleForwards(conn: SshConnection): void {
  conn.client.on('tcpip', (accept, reject, info) => {
    void (async () => {
      const o = await conn.decide(forwardRequest('port_forward', info.destIP, info.destPort), '');
      if (!('decision_id' in o) || !o.allowed) return reject();
      try {
        const client = await conn.upstreamClient();
        const up = await new Promise<ClientChannel>((resolve, rej) =>
          client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (e, c) => (e ? rej(e) : resolve(c))),
        );
        const ch = accept();
        ch.pipe(up).pipe(ch);
      } catch (e) {
        conn.log.warn('port forward failed upstream', { error: errorMessage(e), session: conn.id });
        reject();
      }
    })();
  });

  conn.client.on('request', (accept, reject, name, info) => {
    void (async () => {
      if (name === 'cancel-tcpip-forward') {
        const client = await conn.upstreamClient().catch(() => undefined);
        client?.unforwardIn(info.bindAddr, info.bindPort, () => accept?.());
        if (!client) reject?.();
        return;
      }
      if (name !== 'tcpip-forward') return reject?.();
      const o = await conn.decide(forwardRequest('remote_forward', info.bindAddr, info.bindPort), '');
      if (!('decision_id' in o) || !o.allowed) return reject?.();
      try {
        const client = await conn.upstreamClient();
        const port = await new Promise<number>((resolve, rej) => client.forwardIn(info.bindAddr, info.bindPort, (e, p) => (e ? rej(e) : resolve(p))));
        client.on('tcp connection', (details, acceptUp, rejectUp) => {
          if (details.destPort !== port) return rejectUp();
          conn.client.forwardOut(details.destIP, details.destPort, details.srcIP, details.srcPort, (e, ch) => {
            if (e) return rejectUp();
            const up = acceptUp();
            up.pipe(ch).pipe(up);
          });
        });
        accept?.(port);
      } catch (e) {
        conn.log.warn('remote forward failed upstream', { error: errorMessage(e), session: conn.id });
        reject?.();
      }
    })();
  });
}
