import * as client from 'openid-client';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { TaskgateError } from '../errors.ts';
import type { Authenticator, Identity } from './identity.ts';

export interface OidcOptions {
  /** Issuer URL exactly as in the discovery document. */
  issuer: string;
  /** Accepted audiences (the token's `aud` must contain one). */
  audience: string | string[];
  /** Claim holding the subject; default `sub`. Use `email` where task assignees are emails. */
  subjectClaim?: string;
  /**
   * Claim holding groups: a top-level key (also namespaced ones such as
   * `https://example.com/groups`) or a dotted path (`realm_access.roles`).
   * Default `groups`.
   */
  groupsClaim?: string;
  /** Claim naming the human a service identity acts for; default `act.sub` (RFC 8693), then `taskgate_acting_for`. */
  actingForClaim?: string;
  /** Seconds of clock skew tolerated on exp/nbf/iat; default 30. */
  clockToleranceSec?: number;
  /** Accepted JWS algorithms; default RS256, PS256, ES256, EdDSA (never none or HMAC). */
  algorithms?: string[];
  /** Allow an http:// issuer (only honoured for loopback addresses: tests and the demo). */
  allowInsecureLoopback?: boolean;
  /** Minimum seconds between JWKS refetches when an unknown key id appears (key rotation); default 30. */
  jwksCooldownSec?: number;
  /** Seconds a fetched JWKS is trusted before it is refetched (a key the issuer removed stops verifying after this); default 600. */
  jwksCacheMaxAgeSec?: number;
  /** The client id used for discovery (any registered client; default `taskgate`). */
  clientId?: string;
  /**
   * Verified-token cache (default on): a token that verified is remembered by
   * its exact string, so a repeat skips the signature check (RS256 costs
   * ~50-100 µs). An entry never outlives the token's `exp` (plus the clock
   * tolerance, as verification allows) nor `jwksCacheMaxAgeSec` (a key the
   * issuer removed stops verifying within the same bound as without the
   * cache), and every entry is dropped when a verification finds the issuer's
   * key set changed. Only successes are cached: a forged or altered token is a
   * different string and always goes through full verification. `false` turns
   * it off.
   */
  verifiedTokenCache?: false | { maxEntries?: number };
}

const DEFAULT_ALGS = ['RS256', 'PS256', 'ES256', 'EdDSA'];

/** Reads a claim by exact key first (namespaced URLs contain dots), then by dotted path. */
export function readClaim(payload: Record<string, unknown>, claim: string): unknown {
  if (claim in payload) return payload[claim];
  let cur: unknown = payload;
  for (const part of claim.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function isLoopback(url: URL): boolean {
  return ['127.0.0.1', 'localhost', '[::1]', '::1'].includes(url.hostname);
}

/**
 * Verifies OIDC JWT access tokens (and ID tokens) against the issuer's JWKS:
 * signature, issuer, audience, expiry and not-before with a small clock skew.
 * Discovery goes through openid-client; keys rotate transparently (an unknown
 * `kid` triggers a JWKS refetch, rate-limited).
 */
interface VerifiedToken {
  identity: Identity;
  /** Epoch ms after which the entry must be verified again. */
  until: number;
}

/** What createRemoteJWKSet returns: the key lookup plus the current key set. */
type RemoteJwks = JWTVerifyGetKey & { jwks(): unknown };

export class OidcAuthenticator implements Authenticator {
  private readonly verified = new Map<string, VerifiedToken>();
  private readonly maxVerified: number;
  private readonly maxVerifiedAgeMs: number;
  private keySet: string | undefined;
  private hits = 0;
  private misses = 0;

  private constructor(
    private readonly opts: OidcOptions,
    private readonly issuer: string,
    private readonly jwks: RemoteJwks,
  ) {
    this.maxVerified = opts.verifiedTokenCache === false ? 0 : Math.max(0, opts.verifiedTokenCache?.maxEntries ?? 10_000);
    this.maxVerifiedAgeMs = (opts.jwksCacheMaxAgeSec ?? 600) * 1000;
  }

  /** Verified-token cache counters (tests, metrics). */
  verifiedCacheStats(): { size: number; hits: number; misses: number } {
    return { size: this.verified.size, hits: this.hits, misses: this.misses };
  }

  static async discover(opts: OidcOptions): Promise<OidcAuthenticator> {
    let url: URL;
    try {
      url = new URL(opts.issuer);
    } catch {
      throw new TaskgateError('config_invalid', `OIDC issuer ${JSON.stringify(opts.issuer)} is not a URL`);
    }
    const insecure = url.protocol === 'http:';
    if (insecure && !(opts.allowInsecureLoopback && isLoopback(url))) {
      throw new TaskgateError('config_invalid', `OIDC issuer ${opts.issuer} must be https (http is accepted only on loopback with allowInsecureLoopback)`);
    }
    let config: client.Configuration;
    try {
      config = await client.discovery(url, opts.clientId ?? 'taskgate', undefined, undefined, insecure ? { execute: [client.allowInsecureRequests] } : {});
    } catch (e) {
      throw new TaskgateError('unavailable', `OIDC discovery failed for ${opts.issuer}: ${(e as Error).message}`);
    }
    const meta = config.serverMetadata();
    if (!meta.jwks_uri) throw new TaskgateError('config_invalid', `OIDC issuer ${opts.issuer} publishes no jwks_uri`);
    const jwks = createRemoteJWKSet(new URL(meta.jwks_uri), {
      cooldownDuration: (opts.jwksCooldownSec ?? 30) * 1000,
      cacheMaxAge: (opts.jwksCacheMaxAgeSec ?? 600) * 1000,
      timeoutDuration: 5000,
    });
    return new OidcAuthenticator(opts, meta.issuer, jwks);
  }

  async authenticate(token: string): Promise<Identity> {
    const t = token.trim().replace(/^Bearer\s+/i, '');
    if (this.maxVerified > 0) {
      const hit = this.verified.get(t);
      if (hit) {
        if (Date.now() <= hit.until) {
          this.hits++;
          return { ...hit.identity, groups: [...hit.identity.groups] };
        }
        this.verified.delete(t);
      }
      this.misses++;
    }
    if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(t)) {
      throw new TaskgateError('auth_failed', 'credential is not a JWT: present an OIDC access token (run `taskgate login`)');
    }
    const verifiedAt = Date.now();
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(t, this.jwks, {
        issuer: this.issuer,
        audience: this.opts.audience,
        clockTolerance: this.opts.clockToleranceSec ?? 30,
        algorithms: this.opts.algorithms ?? DEFAULT_ALGS,
        requiredClaims: ['exp'],
      }));
    } catch (e) {
      this.noteKeySet();
      throw new TaskgateError('auth_failed', describeJoseError(e), { hint: 'run `taskgate login` for a fresh token' });
    }
    this.noteKeySet();
    const identity = this.identityFrom(payload as Record<string, unknown>);
    if (this.maxVerified > 0 && typeof payload.exp === 'number') {
      const until = Math.min(payload.exp * 1000 + (this.opts.clockToleranceSec ?? 30) * 1000, verifiedAt + this.maxVerifiedAgeMs);
      if (until > Date.now()) {
        if (this.verified.size >= this.maxVerified) this.evict();
        this.verified.set(t, { identity: { ...identity, groups: [...identity.groups] }, until });
      }
    }
    return identity;
  }

  /** The issuer's key set changed (rotation, a key removed): nothing verified under the old set is trusted. */
  private noteKeySet(): void {
    // jose hands out a copy of the set: compare content (only on full verifications, never on cache hits).
    const current = JSON.stringify(this.jwks.jwks() ?? null);
    if (current === this.keySet) return;
    if (this.keySet !== undefined && this.keySet !== 'null') this.verified.clear();
    this.keySet = current;
  }

  /** Full: drop expired entries, then the oldest quarter (insertion order), so eviction is amortised. */
  private evict(): void {
    const now = Date.now();
    for (const [k, v] of this.verified) if (v.until < now) this.verified.delete(k);
    let drop = this.verified.size - Math.floor(this.maxVerified * 0.75);
    for (const k of this.verified.keys()) {
      if (drop-- <= 0) break;
      this.verified.delete(k);
    }
  }

  private identityFrom(p: Record<string, unknown>): Identity {
    const subject = readClaim(p, this.opts.subjectClaim ?? 'sub');
    if (typeof subject !== 'string' || subject === '') {
      throw new TaskgateError('auth_failed', `token has no ${this.opts.subjectClaim ?? 'sub'} claim`);
    }
    const rawGroups = readClaim(p, this.opts.groupsClaim ?? 'groups');
    const groups = Array.isArray(rawGroups)
      ? rawGroups.filter((g): g is string => typeof g === 'string')
      : typeof rawGroups === 'string'
        ? rawGroups.split(/[ ,]+/).filter(Boolean)
        : [];
    const clientId = typeof p.client_id === 'string' ? p.client_id : typeof p.azp === 'string' ? p.azp : undefined;
    const service = clientId !== undefined && p.sub === clientId;
    const acting = this.opts.actingForClaim
      ? readClaim(p, this.opts.actingForClaim)
      : (readClaim(p, 'act.sub') ?? readClaim(p, 'taskgate_acting_for'));
    const id: Identity = { subject, groups, issuer: this.issuer, type: service ? 'service' : 'user' };
    if (typeof acting === 'string' && acting) id.acting_for = acting;
    if (typeof p.email === 'string') id.email = p.email;
    if (typeof p.exp === 'number') id.expires_at_ms = p.exp * 1000;
    return id;
  }
}

function describeJoseError(e: unknown): string {
  if (e instanceof joseErrors.JWTExpired) return 'token expired';
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'aud') return 'token audience is not accepted here';
    if (e.claim === 'iss') return 'token issuer is not the configured issuer';
    if (e.claim === 'nbf') return 'token is not valid yet';
    return `token claim ${e.claim} is invalid: ${e.reason}`;
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return 'token signature is invalid';
  if (e instanceof joseErrors.JWKSNoMatchingKey) return 'token is signed with a key the issuer does not publish';
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return 'token signing algorithm is not allowed';
  if (e instanceof joseErrors.JWKSTimeout) return 'issuer JWKS did not answer in time';
  if (e instanceof joseErrors.JWTInvalid || e instanceof joseErrors.JWSInvalid) return 'token is malformed';
  return `token rejected: ${(e as Error).message}`;
}
