/**
 * The sidecar's own connection to the real PostgreSQL server: TCP, optional
 * TLS (verify-full by default when configured), startup, and authentication
 * with the sidecar's stored credential (SCRAM-SHA-256, md5 or cleartext
 * password). The user's token never reaches the server; the service
 * credential never reaches the user.
 */
import { createRequire } from 'node:module';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { serialize } from 'pg-protocol';
import { errorMessage, TaskgateError } from '../../core/errors.ts';
import { B, decodeErrorFields, decodeReadyForQuery } from './codec/backend.ts';
import { FrameReader } from './codec/framing.ts';
import { MessagePump, type Duplex } from './message-pump.ts';
import { PayloadReader } from './codec/reader.ts';

const require = createRequire(import.meta.url);
interface ScramSession {
  response: string;
  mechanism: string;
}
const sasl = require('pg/lib/crypto/sasl.js') as {
  startSession(mechanisms: string[], stream?: unknown): ScramSession;
  continueSession(s: ScramSession, password: string, serverData: string, stream?: unknown): Promise<void>;
  finalizeSession(s: ScramSession, serverData: string): void;
};
const pgCryptoUtils = require('pg/lib/crypto/utils.js') as {
  postgresMd5PasswordHash(user: string, password: string, salt: Buffer): Promise<string>;
};

export interface UpstreamTlsConfig {
  /** verify-full (default): CA-verified certificate whose name matches host; require: encrypted, unverified. */
  mode?: 'verify-full' | 'require';
  /** PEM CA bundle; system CAs when absent. */
  ca?: string | Buffer;
  /** Name to verify (defaults to host). */
  servername?: string;
}

export interface UpstreamConfig {
  host: string;
  port: number;
  /** The sidecar's own login. */
  user: string;
  password: string;
  database: string;
  tls?: UpstreamTlsConfig;
  connectTimeoutMs?: number;
}


export interface UpstreamConnection {
  socket: Duplex;
  /** ParameterStatus values the server sent during startup, in order. */
  parameters: [string, string][];
  pid: number;
  secret: number;
  status: 'I' | 'T' | 'E';
  /** The reader holding any bytes already received after ReadyForQuery. */
  reader: FrameReader;
}

function openSocket(cfg: UpstreamConfig): Promise<Duplex> {
  const timeout = cfg.connectTimeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const sock = netConnect({ host: cfg.host, port: cfg.port });
    sock.setNoDelay(true);
    const t = setTimeout(() => {
      sock.destroy();
      reject(new TaskgateError('unavailable', `upstream ${cfg.host}:${cfg.port}: connect timed out after ${timeout} ms`));
    }, timeout);
    sock.once('error', (e) => {
      clearTimeout(t);
      reject(new TaskgateError('unavailable', `upstream ${cfg.host}:${cfg.port}: ${errorMessage(e)}`));
    });
    sock.once('connect', () => {
      if (!cfg.tls) {
        clearTimeout(t);
        sock.removeAllListeners('error');
        resolve(sock);
        return;
      }
      sock.write(serialize.requestSsl());
      sock.once('data', (d: Buffer) => {
        if (d[0] !== 0x53 /* S */) {
          clearTimeout(t);
          sock.destroy();
          reject(new TaskgateError('unavailable', `upstream ${cfg.host}:${cfg.port} refused TLS (sslmode ${cfg.tls?.mode ?? 'verify-full'} requires it)`));
          return;
        }
        const mode = cfg.tls?.mode ?? 'verify-full';
        const opts: ConnectionOptions = { socket: sock, servername: cfg.tls?.servername ?? cfg.host, rejectUnauthorized: mode === 'verify-full' };
        if (cfg.tls?.ca) opts.ca = cfg.tls.ca;
        if (mode === 'require') opts.checkServerIdentity = () => undefined;
        const ts = tlsConnect(opts);
        ts.once('secureConnect', () => {
          clearTimeout(t);
          ts.removeAllListeners('error');
          sock.removeAllListeners('error');
          ts.setNoDelay(true);
          resolve(ts);
        });
        ts.once('error', (e) => {
          clearTimeout(t);
          ts.destroy();
          reject(new TaskgateError('unavailable', `upstream TLS to ${cfg.host}:${cfg.port}: ${errorMessage(e)}`));
        });
      });
    });
  });
}

/**
 * Connects and authenticates as the sidecar's service user. `params` are
 * extra startup parameters (application_name, client_encoding, ...).
 * Throws TaskgateError('unavailable' | 'auth_failed') with the server's reason.
 */
export async function connectUpstream(cfg: UpstreamConfig, params: Record<string, string> = {}): Promise<UpstreamConnection> {
  const sock = await openSocket(cfg);
  const pump = new MessagePump(sock, new FrameReader(false), 'upstream');
  const timeout = setTimeout(() => sock.destroy(new Error('upstream startup timed out')), cfg.connectTimeoutMs ?? 10_000);
  try {
    sock.write(serialize.startup({ ...params, user: cfg.user, database: cfg.database }));
    const parameters: [string, string][] = [];
    let pid = 0;
    let secret = 0;
    let scram: ScramSession | undefined;
    for (;;) {
      const m = await pump.next();
      if (m.type === B.ErrorResponse) {
        const f = decodeErrorFields(m.payload);
        const code = f.code === '28P01' || f.code === '28000' ? 'auth_failed' : 'unavailable';
        throw new TaskgateError(code, `upstream refused the sidecar's login: ${f.message} (SQLSTATE ${f.code})`);
      }
      if (m.type === B.Authentication) {
        const r = new PayloadReader(m.payload);
        const kind = r.int32('auth kind');
        switch (kind) {
          case 0:
            break; // AuthenticationOk
          case 3:
            sock.write(serialize.password(cfg.password));
            break;
          case 5: {
            const salt = r.bytes(4, 'md5 salt');
            sock.write(serialize.password(await pgCryptoUtils.postgresMd5PasswordHash(cfg.user, cfg.password, Buffer.from(salt))));
            break;
          }
          case 10: {
            const mechs: string[] = [];
            for (;;) {
              const s = r.cstring('SASL mechanism');
              if (!s) break;
              mechs.push(s);
            }
            scram = sasl.startSession(mechs);
            sock.write(serialize.sendSASLInitialResponseMessage(scram.mechanism, scram.response));
            break;
          }
          case 11:
            if (!scram) throw new TaskgateError('protocol', 'upstream sent SASLContinue before SASL');
            await sasl.continueSession(scram, cfg.password, r.bytes(r.remaining).toString('utf8'));
            sock.write(serialize.sendSCRAMClientFinalMessage(scram.response));
            break;
          case 12:
            if (!scram) throw new TaskgateError('protocol', 'upstream sent SASLFinal before SASL');
            sasl.finalizeSession(scram, r.bytes(r.remaining).toString('utf8'));
            break;
          default:
            throw new TaskgateError('unavailable', `upstream asks for an unsupported authentication method (${kind}); use scram-sha-256, md5 or password for the sidecar's user`);
        }
        continue;
      }
      if (m.type === B.ParameterStatus) {
        const r = new PayloadReader(m.payload);
        parameters.push([r.cstring(), r.cstring()]);
        continue;
      }
      if (m.type === B.BackendKeyData) {
        const r = new PayloadReader(m.payload);
        pid = r.int32();
        secret = r.int32();
        continue;
      }
      if (m.type === B.ReadyForQuery) {
        const status = decodeReadyForQuery(m.payload);
        pump.detach();
        clearTimeout(timeout);
        return { socket: sock, parameters, pid, secret, status, reader: pump.reader };
      }
      // NoticeResponse / NegotiateProtocolVersion during startup: ignore.
    }
  } catch (e) {
    clearTimeout(timeout);
    pump.detach();
    sock.destroy();
    if (e instanceof TaskgateError) throw e;
    throw new TaskgateError('unavailable', `upstream startup failed: ${errorMessage(e)}`);
  }
}

/** Sends a CancelRequest for an upstream backend (best effort; PostgreSQL never answers it). */
export async function cancelUpstream(cfg: UpstreamConfig, pid: number, secret: number): Promise<void> {
  const sock = await openSocket(cfg);
  await new Promise<void>((resolve) => {
    sock.once('close', () => resolve());
    sock.once('error', () => resolve());
    sock.end(serialize.cancel(pid, secret));
    setTimeout(() => {
      sock.destroy();
      resolve();
    }, 5000).unref();
  });
}
