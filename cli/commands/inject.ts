import type { Command } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { injectManifest } from '../../inject/manifest.ts';
import { parseEndpoints } from '../../inject/pod.ts';
import { startInjectionWebhook } from '../../inject/webhook.ts';
import { createLogger } from '../../core/log.ts';

const DEFAULT_IMAGE = process.env.TASKGATE_IMAGE ?? 'taskgate/taskgate:0.1.0';

/** `taskgate inject` (manifests) and `taskgate inject-webhook` (admission webhook server). */
export function registerInjectCommands(program: Command): void {
  program
    .command('inject')
    .description('add the taskgate sidecar to the pod templates of a Kubernetes manifest (like istioctl kube-inject)')
    .requiredOption('-f, --filename <file>', 'manifest to read (- for stdin)')
    .option('-o, --output <file>', 'write here instead of stdout')
    .option('--image <image>', 'sidecar image', DEFAULT_IMAGE)
    .option('--endpoint <ENV=host:port...>', 'point env var ENV at the sidecar listener host:port (repeatable; also read from the taskgate.io/endpoints annotation)', collect, [])
    .option('--config-map <name>', 'ConfigMap with taskgate.yaml', 'taskgate-config')
    .option('--credentials-secret <name>', 'Secret with the upstream credentials (mounted only into the sidecar)', 'taskgate-upstream-credentials')
    .option('--bundle-config-map <name>', 'ConfigMap with the compiled policy bundle')
    .option('--only-annotated', 'inject only pod templates annotated taskgate.io/inject: "true"')
    .action(async (o: { filename: string; output?: string; image: string; endpoint: string[]; configMap: string; credentialsSecret: string; bundleConfigMap?: string; onlyAnnotated?: boolean }) => {
      const text = o.filename === '-' ? await readStdin() : await readFile(o.filename, 'utf8');
      const opts: Parameters<typeof injectManifest>[1] = {
        image: o.image,
        configMap: o.configMap,
        credentialsSecret: o.credentialsSecret,
        endpoints: parseEndpoints(o.endpoint.join(',')),
      };
      if (o.bundleConfigMap) opts.bundleConfigMap = o.bundleConfigMap;
      if (o.onlyAnnotated) opts.onlyAnnotated = true;
      const { text: out, report } = injectManifest(text, opts);
      if (o.output) await writeFile(o.output, out);
      else process.stdout.write(out);
      for (const r of report) process.stderr.write(`${r.result.padEnd(14)} ${r.kind}/${r.name}${r.detail ? `: ${r.detail}` : ''}\n`);
    });

  program
    .command('inject-webhook')
    .description('serve the mutating admission webhook that injects the sidecar into annotated pods')
    .option('--host <host>', 'listen address', '0.0.0.0')
    .option('--port <port>', 'listen port', '8443')
    .requiredOption('--tls-cert <file>', 'serving certificate (PEM)')
    .requiredOption('--tls-key <file>', 'serving key (PEM)')
    .option('--image <image>', 'sidecar image', DEFAULT_IMAGE)
    .option('--fail-open', 'admit pods unmodified when injection fails (default: refuse them)')
    .action(async (o: { host: string; port: string; tlsCert: string; tlsKey: string; image: string; failOpen?: boolean }) => {
      const hook = await startInjectionWebhook({
        image: o.image,
        failOpen: o.failOpen === true,
        listen: { host: o.host, port: Number(o.port) },
        tls: { cert: await readFile(o.tlsCert), key: await readFile(o.tlsKey) },
        log: createLogger(),
      });
      process.stderr.write(`taskgate injection webhook listening on ${hook.url}/mutate\n`);
      await new Promise<void>((resolve) => process.once('SIGTERM', resolve).once('SIGINT', resolve));
      await hook.close();
    });
}

function collect(v: string, prev: string[]): string[] {
  return [...prev, v];
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
