/**
 * The client side of connection startup: SSLRequest (TLS with the configured
 * certificate, or 'N'), GSSENCRequest ('N'), CancelRequest, StartupMessage
 * (user, database, task id from `options` or `application_name`), and the
 * password exchange in which the client's password is its OIDC access token.
 */
import { isIP } from 'node:net';
import { TLSSocket, type SecureContext } from 'node:tls';
import { errorMessage, TaskgateError } from '../../core/errors.ts';
import type { Authenticator, Identity } from '../../core/identity/identity.ts';
import { authenticationCleartextPassword } from './codec/backend.ts';
import { FrameReader, ProtocolError } from './codec/framing.ts';
import { decodePassword, decodeStartup, F, parseStartupOptions, PROTOCOL_3_0 } from './codec/frontend.ts';
import { MessageWriter } from './codec/reader.ts';
import { MessagePump, type Duplex } from './message-pump.ts';

/** A startup failure the client sees as a FATAL ErrorResponse. */
export class StartupError extends Error {
  /** The socket the error must be written to (the TLS socket once TLS is up). */
  socket?: Duplex;
  constructor(
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
    this.name = 'StartupError';
  }
}

/** Startup parameters passed on to the upstream server; anything else is refused. */
export const FORWARDED_PARAMETERS = new Set([
  'application_name',
  'client_encoding',
  'datestyle',
  'timezone',
  'intervalstyle',
  'extra_float_digits',
  'search_path',
  'statement_timeout',
  'lock_timeout',
  'idle_in_transaction_session_timeout',
  'bytea_output',
  'standard_conforming_strings',
  'default_transaction_isolation',
  'default_transaction_read_only',
]);

const TASK_SETTING = 'taskgate.task';
const APP_NAME_TASK = /(?:^|\s)taskgate:(\S+)/;

export interface ClientHandshake {
  socket: Duplex;
  reader: FrameReader;
  tls: boolean;
  identity: Identity;
  task_id: string;
  user: string;
  database: string;
  /** Settings to pass to the upstream startup packet (names lower case as the client sent them). */
  forward: Record<string, string>;
  /** The `replication` startup parameter, when the client asked for a replication connection. */
  replication?: string;
}

export type HandshakeResult = { kind: 'cancel'; pid: number; secret: number } | ({ kind: 'session' } & ClientHandshake);

export interface HandshakeOptions {
  authenticator: Authenticator;
  tls?: SecureContext;
  allowPlaintext?: boolean;
  /** The database name the sidecar serves; a client asking for another is refused. */
  database: string;
  timeoutMs?: number;
}

export function isLoopback(addr: string | undefined): boolean {
  if (!addr) return false;
  if (addr.startsWith('::ffff:')) addr = addr.slice(7);
  if (isIP(addr) === 4) return addr.startsWith('127.');
  return addr === '::1';
}

/** Task id and the settings to forward, from the startup parameters. */
export function taskFromStartup(params: Record<string, string>): { task_id: string | undefined; forward: Record<string, string> } {
  const forward: Record<string, string> = {};
  let task: string | undefined;
  for (const [k, v] of Object.entries(params)) {
    const name = k.toLowerCase();
    if (name === 'user' || name === 'database' || name === 'replication' || name === 'options') continue;
    if (name === 'fallback_application_name') continue;
    if (!FORWARDED_PARAMETERS.has(name)) {
      throw new StartupError('42501', `startup parameter "${k}" is not allowed through taskgate (allowed: ${[...FORWARDED_PARAMETERS].join(', ')})`);
    }
    forward[name] = v;
  }
  if (params.options) {
    let opts;
    try {
      opts = parseStartupOptions(params.options);
    } catch (e) {
      throw new StartupError('08P01', errorMessage(e));
    }
    for (const o of opts) {
      if (o.name === TASK_SETTING) task = o.value;
      else if (FORWARDED_PARAMETERS.has(o.name)) forward[o.name] = o.value;
      else throw new StartupError('42501', `startup option -c ${o.name} is not allowed through taskgate (allowed: ${TASK_SETTING}, ${[...FORWARDED_PARAMETERS].join(', ')})`);
    }
  }
  const app = forward.application_name ?? params.fallback_application_name;
  const m = app ? APP_NAME_TASK.exec(app) : null;
  if (m) {
    task ??= m[1];
    const rest = app!.replace(APP_NAME_TASK, '').trim();
    if (forward.application_name !== undefined) forward.application_name = rest;
  }
  return { task_id: task?.trim() || undefined, forward };
}

function negotiateProtocolVersion(unsupported: string[]): Buffer {
  const w = new MessageWriter().int32(PROTOCOL_3_0 & 0xffff).int32(unsupported.length);
  for (const u of unsupported) w.cstring(u);
  return w.build('v');
}

/**
 * Runs the client handshake up to a verified identity and a task id. Throws
 * StartupError (sent to the client as FATAL) or a socket error.
 */
export async function clientHandshake(raw: Duplex, opts: HandshakeOptions): Promise<HandshakeResult> {
  let socket: Duplex = raw;
  let tls = false;
  let pump = new MessagePump(socket, new FrameReader(true), 'client');
  const remote = raw.remoteAddress;
  try {
    for (;;) {
      const f = await pump.next();
      let p;
      try {
        p = decodeStartup(f.payload);
      } catch (e) {
        throw new StartupError('08P01', `invalid startup packet: ${errorMessage(e)}`);
      }
      if (p.kind === 'gssenc') {
        socket.write('N');
        continue;
      }
      if (p.kind === 'ssl') {
        if (tls || !opts.tls) {
          socket.write('N');
          continue;
        }
        if (pump.reader.buffered > 0) throw new StartupError('08P01', 'received unencrypted data after SSL request');
        pump.detach();
        socket.write('S');
        const ts = new TLSSocket(socket, { isServer: true, secureContext: opts.tls });
        await new Promise<void>((resolve, reject) => {
          ts.once('secure', resolve);
          ts.once('error', (e) => reject(new StartupError('08P01', `TLS handshake failed: ${errorMessage(e)}`)));
        });
        ts.removeAllListeners('error');
        socket = ts;
        tls = true;
        pump = new MessagePump(socket, new FrameReader(true), 'client');
        continue;
      }
      if (p.kind === 'cancel') {
        pump.detach();
        return { kind: 'cancel', pid: p.pid, secret: p.secret };
      }
      if (p.version >> 16 !== 3) throw new StartupError('0A000', `unsupported frontend protocol ${p.version >> 16}.${p.version & 0xffff}: taskgate speaks 3.0`);
      const ext = Object.keys(p.params).filter((k) => k.startsWith('_pq_.'));
      if ((p.version & 0xffff) !== 0 || ext.length) {
        socket.write(negotiateProtocolVersion(ext));
        for (const k of ext) delete p.params[k];
      }
      if (!tls && !opts.allowPlaintext && !isLoopback(remote)) {
        throw new StartupError('28000', 'taskgate requires TLS for connections from other hosts (use sslmode=require or verify-full)');
      }
      const user = p.params.user;
      if (!user) throw new StartupError('28000', 'no PostgreSQL user name specified in the startup packet');
      const database = p.params.database || user;
      if (database !== opts.database) {
        throw new StartupError('3D000', `database "${database}" is not served by this taskgate sidecar (it serves "${opts.database}")`);
      }
      const { task_id, forward } = taskFromStartup(p.params);
      if (!task_id) {
        throw new StartupError(
          '28000',
          'no task id: set PGOPTIONS="-c taskgate.task=<TASK-ID>" or application_name=taskgate:<TASK-ID> (every taskgate session is bound to a task)',
        );
      }
      pump.reader.startupMode = false;
      socket.write(authenticationCleartextPassword());
      const pw = await pump.next();
      if (pw.type !== F.Password) throw new StartupError('08P01', `expected a password message, got message type 0x${pw.type.toString(16)}`);
      let token: string;
      try {
        token = decodePassword(pw.payload);
      } catch (e) {
        throw new StartupError('08P01', errorMessage(e));
      }
      if (!token) throw new StartupError('28P01', 'empty password: present your OIDC access token as the password (PGPASSWORD=$(taskgate login --print-token))');
      let identity: Identity;
      try {
        identity = await opts.authenticator.authenticate(token);
      } catch (e) {
        throw new StartupError('28P01', `OIDC token rejected: ${errorMessage(e)}`);
      }
      pump.detach();
      const out: HandshakeResult = { kind: 'session', socket, reader: pump.reader, tls, identity, task_id, user, database, forward };
      if (p.params.replication !== undefined) out.replication = p.params.replication;
      return out;
    }
  } catch (e) {
    pump.detach();
    let err: unknown = e;
    if (e instanceof ProtocolError) err = new StartupError('08P01', e.message);
    else if (e instanceof TaskgateError) err = new StartupError('28000', e.message);
    if (err instanceof StartupError) err.socket = socket;
    throw err;
  }
}
