/**
 * A real OpenID Provider (npm `oidc-provider`, certified) running in-process
 * on a free loopback port: discovery, JWKS, device authorization flow, client
 * credentials. Used by tests and by `taskgate demo`; never in production.
 *
 * Tokens for tests are minted by the provider itself (its AccessToken model,
 * JWT format, signed with its keys and verifiable through its JWKS), so the
 * data path checks exactly what it would check against any IdP.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';
import type Provider from 'oidc-provider';
import { randomUUID } from 'node:crypto';
import { freePort } from './net.ts';

export interface IssuerUser {
  /** Account id, used as `sub` (use an email so it matches task assignees). */
  sub: string;
  email?: string;
  groups?: string[];
  /** Password for the interactive login page (device flow). */
  password?: string;
}

export interface IssuerClient {
  client_id: string;
  client_secret?: string;
  /** client credentials clients are service identities */
  service?: boolean;
  /** Claims added to this client's tokens (e.g. taskgate_acting_for for an agent). */
  extra_claims?: Record<string, unknown>;
}

export interface OidcIssuer {
  issuer: string;
  audience: string;
  /** Public CLI client (device flow): `taskgate-cli`. */
  cliClientId: string;
  /** Mints a real access token (JWT) for a user through the provider's own token model. */
  token(sub: string, opts?: { ttlSec?: number }): Promise<string>;
  /** Client-credentials token through the real token endpoint. */
  serviceToken(clientId: string): Promise<string>;
  /** Signs arbitrary claims with the provider's current key (expired / wrong-audience cases). */
  signRaw(claims: Record<string, unknown>, opts?: { kid?: 'current' | 'other' }): Promise<string>;
  /** Replaces the signing key (the old key stays published for verification of existing tokens unless dropOld). */
  rotateKeys(opts?: { dropOld?: boolean }): Promise<void>;
  users: Map<string, IssuerUser>;
  stop(): Promise<void>;
}

const RESOURCE = 'urn:taskgate';

type PrivateKey = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

async function newKey(): Promise<{ priv: JWK; pub: JWK; privateKey: PrivateKey }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomUUID();
  const priv = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const pub = { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' };
  return { priv, pub, privateKey };
}

/**
 * oidc-provider prints development warnings (in-memory adapter, dev
 * interactions, runtime version) on every start. This issuer is development-
 * only by design, so they are filtered here and nowhere else.
 */
async function loadProvider(): Promise<typeof Provider> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('oidc-provider WARNING')) return;
    warn(...args);
  };
  try {
    return (await import('oidc-provider')).default;
  } finally {
    console.warn = warn;
  }
}

function quietly<T>(f: () => T): T {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('oidc-provider WARNING')) return;
    warn(...args);
  };
  try {
    return f();
  } finally {
    console.warn = warn;
  }
}

export async function startOidcIssuer(
  opts: { users?: IssuerUser[]; clients?: IssuerClient[]; audience?: string; accessTokenTtlSec?: number; port?: number } = {},
): Promise<OidcIssuer> {
  const port = opts.port ?? (await freePort());
  const issuer = `http://127.0.0.1:${port}`;
  const audience = opts.audience ?? 'taskgate';
  const users = new Map((opts.users ?? defaultUsers()).map((u) => [u.sub, u]));
  const clients: IssuerClient[] = opts.clients ?? [
    { client_id: 'taskgate-sidecar', client_secret: 'sidecar-secret', service: true },
    { client_id: 'ci-bot', client_secret: 'ci-bot-secret', service: true },
  ];
  const extraByClient = new Map(clients.map((c) => [c.client_id, c.extra_claims ?? {}]));
  let keys = [await newKey()];
  const spare = await newKey(); // never published: forged signatures
  const ttl = opts.accessTokenTtlSec ?? 3600;

  const ProviderClass = await loadProvider();
  const makeProvider = () => {
    const p = quietly(() => new ProviderClass(issuer, {
      clients: [
        {
          client_id: 'taskgate-cli',
          token_endpoint_auth_method: 'none',
          grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'],
          response_types: [],
          redirect_uris: [],
        },
        {
          client_id: 'taskgate',
          token_endpoint_auth_method: 'none',
          grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
          response_types: [],
          redirect_uris: [],
        },
        ...clients.map((c) => ({
          client_id: c.client_id,
          client_secret: c.client_secret ?? `${c.client_id}-secret`,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
        })),
      ],
      jwks: { keys: keys.map((k) => k.priv) as never },
      findAccount: async (_ctx: unknown, sub: string) => {
        const u = users.get(sub);
        if (!u) return undefined;
        return {
          accountId: sub,
          claims: async () => ({ sub, email: u.email ?? sub, groups: u.groups ?? [] }),
        };
      },
      claims: { openid: ['sub'], email: ['email'], groups: ['groups'] },
      scopes: ['openid', 'email', 'groups', 'offline_access'],
      features: {
        devInteractions: { enabled: true },
        deviceFlow: { enabled: true },
        clientCredentials: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => RESOURCE,
          useGrantedResource: async () => true,
          getResourceServerInfo: async () => ({
            scope: 'openid email groups',
            audience,
            accessTokenTTL: ttl,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          }),
        },
      },
      extraTokenClaims: async (_ctx: unknown, token: { accountId?: string; clientId?: string }) => {
        const extra: Record<string, unknown> = { ...(token.clientId ? (extraByClient.get(token.clientId) ?? {}) : {}) };
        if (token.accountId) {
          const u = users.get(token.accountId);
          if (u) {
            extra.groups = u.groups ?? [];
            extra.email = u.email ?? u.sub;
          }
        }
        return extra;
      },
      loadExistingGrant: async (ctx: { oidc: { client: { clientId: string }; session: { accountId: string }; provider: Provider } }) => {
        // First-party CLI: consent is implied (as a company IdP configures it for its own tools).
        const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
        grant.addOIDCScope('openid email groups offline_access');
        grant.addResourceScope(RESOURCE, 'openid email groups');
        await grant.save();
        return grant;
      },
      pkce: { required: () => false },
      ttl: { AccessToken: ttl, ClientCredentials: ttl, DeviceCode: 600, Grant: 3600, Session: 3600, Interaction: 600, RefreshToken: 86400 },
    } as never));
    p.proxy = false;
    return p;
  };

  let provider = makeProvider();
  let handler = provider.callback();
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => handler(req, res));
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));

  const token = async (sub: string, o: { ttlSec?: number } = {}): Promise<string> => {
    if (!users.has(sub)) throw new Error(`oidc-issuer: unknown user ${sub}`);
    const client = await provider.Client.find('taskgate-cli');
    const rs = new provider.ResourceServer(RESOURCE, {
      audience,
      scope: 'openid email groups',
      accessTokenTTL: o.ttlSec ?? ttl,
      accessTokenFormat: 'jwt',
      jwt: { sign: { alg: 'RS256' } },
    });
    const at = new provider.AccessToken({
      accountId: sub,
      client,
      scope: 'openid email groups',
      resourceServer: rs,
      gty: 'urn:ietf:params:oauth:grant-type:device_code',
    } as never);
    return at.save();
  };

  const serviceToken = async (clientId: string): Promise<string> => {
    const c = clients.find((x) => x.client_id === clientId);
    if (!c) throw new Error(`oidc-issuer: unknown client ${clientId}`);
    const res = await fetch(`${issuer}/token`, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        authorization: `Basic ${Buffer.from(`${clientId}:${c.client_secret ?? `${clientId}-secret`}`).toString('base64')}`,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials', resource: RESOURCE, scope: 'openid' }),
    });
    const body = (await res.json()) as { access_token?: string; error?: string; error_description?: string };
    if (!body.access_token) throw new Error(`oidc-issuer: client credentials failed: ${body.error} ${body.error_description ?? ''}`);
    return body.access_token;
  };

  const signRaw = async (claims: Record<string, unknown>, o: { kid?: 'current' | 'other' } = {}) => {
    const k = o.kid === 'other' ? spare : keys[0]!;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: issuer, aud: audience, iat: now, exp: now + 300, jti: randomUUID(), ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: k.priv.kid!, typ: 'at+jwt' })
      .sign(k.privateKey);
  };

  const rotateKeys = async (o: { dropOld?: boolean } = {}) => {
    const fresh = await newKey();
    keys = o.dropOld ? [fresh] : [fresh, ...keys];
    provider = makeProvider();
    handler = provider.callback();
  };

  return {
    issuer,
    audience,
    cliClientId: 'taskgate-cli',
    token,
    serviceToken,
    signRaw,
    rotateKeys,
    users,
    stop: () =>
      new Promise<void>((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}

export function defaultUsers(): IssuerUser[] {
  return [
    { sub: 'alice@example.com', groups: ['engineering', 'dba'], password: 'alice' },
    { sub: 'bob@example.com', groups: ['engineering', 'dba', 'reviewers'], password: 'bob' },
    { sub: 'carol@example.com', groups: ['sre', 'reviewers'], password: 'carol' },
    { sub: 'dave@example.com', groups: ['contractors'], password: 'dave' },
  ];
}
