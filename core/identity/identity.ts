import type { IdentityInput } from '../policy-contract.ts';

/** A verified caller. Built only by an Authenticator from a token it checked. */
export interface Identity extends IdentityInput {
  /** Token expiry (ms since epoch): sessions end when it passes. */
  expires_at_ms?: number;
}

/**
 * Verifies a bearer credential (an OIDC access or ID token) and returns who it
 * is. Throws TaskgateError('auth_failed') with a reason the user can act on.
 * Implemented in core/identity/oidc.ts over openid-client.
 */
export interface Authenticator {
  authenticate(token: string): Promise<Identity>;
}
