import type { Command } from 'commander';
import { deviceLogin } from '../../core/identity/device-login.ts';
import { OidcAuthenticator } from '../../core/identity/oidc.ts';
import { currentToken, isLoopbackIssuer } from '../../core/identity/current-token.ts';
import { clearTokens, defaultTokenFile, writeTokens } from '../../core/identity/token-cache.ts';
import { TaskgateError } from '../../core/errors.ts';

/** login / whoami / logout: the user's OIDC identity for every taskgate connection. */
export function registerIdentityCommands(program: Command): void {
  program
    .command('login')
    .description('sign in with your identity provider (OAuth device flow) and cache the token (0600)')
    .option('--issuer <url>', 'OIDC issuer URL (env TASKGATE_ISSUER)', process.env.TASKGATE_ISSUER)
    .option('--client-id <id>', 'OIDC client id of the taskgate CLI (env TASKGATE_CLIENT_ID)', process.env.TASKGATE_CLIENT_ID ?? 'taskgate-cli')
    .option('--resource <uri>', 'resource indicator to request an access token for (env TASKGATE_RESOURCE)', process.env.TASKGATE_RESOURCE)
    .option('--token-file <path>', 'where to cache the token', defaultTokenFile())
    .action(async (o: { issuer?: string; clientId: string; resource?: string; tokenFile: string }) => {
      if (!o.issuer) throw new TaskgateError('config_invalid', 'no issuer given', { hint: 'pass --issuer https://idp.example.com or set TASKGATE_ISSUER' });
      const opts: Parameters<typeof deviceLogin>[0] = {
        issuer: o.issuer,
        clientId: o.clientId,
        allowInsecureLoopback: isLoopbackIssuer(o.issuer),
        prompt: (p) => {
          process.stderr.write(`To sign in, open ${p.verification_uri_complete ?? p.verification_uri}\n`);
          process.stderr.write(`and confirm the code ${p.user_code} (valid ${Math.round(p.expires_in / 60)} min). Waiting...\n`);
        },
      };
      if (o.resource) opts.resource = o.resource;
      const t = await deviceLogin(opts);
      await writeTokens(t, o.tokenFile);
      process.stdout.write(`logged in as ${t.subject ?? '(unknown subject)'}; token cached in ${o.tokenFile} (expires ${new Date(t.expires_at).toISOString()})\n`);
    });

  program
    .command('whoami')
    .description('show who your cached token says you are, verified against the issuer')
    .option('--audience <aud>', 'audience to verify (env TASKGATE_AUDIENCE)', process.env.TASKGATE_AUDIENCE ?? 'taskgate')
    .option('--token-file <path>', 'token cache', defaultTokenFile())
    .option('--json', 'print JSON')
    .action(async (o: { audience: string; tokenFile: string; json?: boolean }) => {
      const { token, cached } = await currentToken({ file: o.tokenFile });
      const issuer = cached?.issuer ?? process.env.TASKGATE_ISSUER;
      if (!issuer) throw new TaskgateError('config_invalid', 'TASKGATE_TOKEN is set but no issuer is known', { hint: 'set TASKGATE_ISSUER' });
      const auth = await OidcAuthenticator.discover({ issuer, audience: o.audience, allowInsecureLoopback: isLoopbackIssuer(issuer) });
      const id = await auth.authenticate(token);
      if (o.json) {
        process.stdout.write(JSON.stringify(id, null, 2) + '\n');
        return;
      }
      process.stdout.write(
        [
          `subject:  ${id.subject}`,
          `type:     ${id.type}${id.acting_for ? ` (acting for ${id.acting_for})` : ''}`,
          `groups:   ${id.groups.join(', ') || '(none)'}`,
          `issuer:   ${id.issuer}`,
          `expires:  ${id.expires_at_ms ? new Date(id.expires_at_ms).toISOString() : 'unknown'}`,
        ].join('\n') + '\n',
      );
    });

  program
    .command('logout')
    .description('remove the cached token')
    .option('--token-file <path>', 'token cache', defaultTokenFile())
    .action(async (o: { tokenFile: string }) => {
      await clearTokens(o.tokenFile);
      process.stdout.write('logged out\n');
    });
}
