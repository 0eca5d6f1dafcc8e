import * as client from 'openid-client';
import { TaskgateError } from '../errors.ts';
import { decodeJwt } from 'jose';
import type { CachedTokens } from './token-cache.ts';

export interface DeviceLoginOptions {
  issuer: string;
  clientId: string;
  /** Resource indicator / audience to request, when the IdP needs one. */
  resource?: string;
  scope?: string;
  allowInsecureLoopback?: boolean;
  signal?: AbortSignal;
  /** Shows the user where to go: called once with the verification URI and code. */
  prompt: (p: { verification_uri: string; verification_uri_complete?: string; user_code: string; expires_in: number }) => void;
}

async function configFor(issuer: string, clientId: string, allowInsecureLoopback?: boolean): Promise<client.Configuration> {
  const url = new URL(issuer);
  const insecure = url.protocol === 'http:';
  if (insecure && !(allowInsecureLoopback && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname))) {
    throw new TaskgateError('config_invalid', `issuer ${issuer} must be https`);
  }
  try {
    return await client.discovery(url, clientId, undefined, client.None(), insecure ? { execute: [client.allowInsecureRequests] } : {});
  } catch (e) {
    throw new TaskgateError('unavailable', `cannot reach the identity provider ${issuer}: ${(e as Error).message}`);
  }
}

function toCache(opts: { issuer: string; clientId: string; resource?: string }, t: client.TokenEndpointResponse, previous?: CachedTokens): CachedTokens {
  let subject: string | undefined;
  try {
    subject = decodeJwt(t.access_token).sub;
  } catch {
    /* opaque access token */
  }
  const out: CachedTokens = {
    issuer: opts.issuer,
    client_id: opts.clientId,
    access_token: t.access_token,
    expires_at: Date.now() + (t.expires_in ?? 300) * 1000,
  };
  if (opts.resource) out.audience = opts.resource;
  const refresh = t.refresh_token ?? previous?.refresh_token;
  if (refresh) out.refresh_token = refresh;
  if (t.id_token) out.id_token = t.id_token;
  if (subject) out.subject = subject;
  return out;
}

/** OAuth 2.0 Device Authorization Grant (RFC 8628) through openid-client. */
export async function deviceLogin(opts: DeviceLoginOptions): Promise<CachedTokens> {
  const config = await configFor(opts.issuer, opts.clientId, opts.allowInsecureLoopback);
  const params: Record<string, string> = { scope: opts.scope ?? 'openid email groups offline_access' };
  if (opts.resource) params.resource = opts.resource;
  let start: client.DeviceAuthorizationResponse;
  try {
    start = await client.initiateDeviceAuthorization(config, params);
  } catch (e) {
    throw new TaskgateError('auth_failed', `device authorization was refused: ${(e as Error).message}`);
  }
  const p: Parameters<DeviceLoginOptions['prompt']>[0] = { verification_uri: start.verification_uri, user_code: start.user_code, expires_in: start.expires_in };
  if (start.verification_uri_complete) p.verification_uri_complete = start.verification_uri_complete;
  opts.prompt(p);
  try {
    const tokens = await client.pollDeviceAuthorizationGrant(config, start, opts.resource ? { resource: opts.resource } : undefined, opts.signal ? { signal: opts.signal } : {});
    return toCache(opts, tokens);
  } catch (e) {
    const msg = (e as { error?: string }).error ?? (e as Error).message;
    if (/expired/.test(msg)) throw new TaskgateError('auth_failed', 'the login code expired before it was approved: run `taskgate login` again');
    if (/access_denied/.test(msg)) throw new TaskgateError('auth_failed', 'the login was denied in the browser');
    throw new TaskgateError('auth_failed', `login failed: ${msg}`);
  }
}

/** Uses the refresh token for a new access token (no browser). */
export async function refreshLogin(t: CachedTokens, opts: { allowInsecureLoopback?: boolean } = {}): Promise<CachedTokens> {
  if (!t.refresh_token) throw new TaskgateError('auth_failed', 'token expired and there is no refresh token: run `taskgate login`');
  const config = await configFor(t.issuer, t.client_id, opts.allowInsecureLoopback);
  try {
    const r = await client.refreshTokenGrant(config, t.refresh_token, t.audience ? { resource: t.audience } : undefined);
    const o: { issuer: string; clientId: string; resource?: string } = { issuer: t.issuer, clientId: t.client_id };
    if (t.audience) o.resource = t.audience;
    return toCache(o, r, t);
  } catch (e) {
    throw new TaskgateError('auth_failed', `token refresh failed (${(e as Error).message}): run \`taskgate login\``);
  }
}
