/**
 * `taskgate inject -f deployment.yaml`: injects the sidecar into every pod
 * template of a (multi-document) Kubernetes manifest, like `istioctl
 * kube-inject`, but editing the YAML document in place so that comments,
 * key order and every field it does not touch are preserved.
 */
import { isMap, isSeq, parseAllDocuments, type Document, type YAMLMap, type YAMLSeq } from 'yaml';
import { TaskgateError } from '../core/errors.ts';
import { ANNOTATION_INJECT, injectPod, type InjectOptions, type PodLike } from './pod.ts';

const TEMPLATE_PATHS: Record<string, (string | number)[]> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface ManifestInjectReport {
  kind: string;
  name: string;
  result: 'injected' | 'skipped' | 'not a workload';
  detail?: string;
}

export interface ManifestInjectOptions extends InjectOptions {
  /** Only inject workloads annotated `taskgate.io/inject: "true"` on the pod template. */
  onlyAnnotated?: boolean;
}

export function injectManifest(text: string, opts: ManifestInjectOptions): { text: string; report: ManifestInjectReport[] } {
  const docs = parseAllDocuments(text, { keepSourceTokens: false });
  const report: ManifestInjectReport[] = [];
  const out: string[] = [];
  for (const [i, doc] of docs.entries()) {
    if (!('errors' in doc) || doc.errors.length > 0) {
      const err = 'errors' in doc ? doc.errors[0] : undefined;
      throw new TaskgateError('input_invalid', `document ${i + 1} is not valid YAML: ${err?.message.split('\n')[0] ?? 'parse error'}`);
    }
    const d = doc as Document.Parsed;
    if (d.contents === null) {
      out.push(d.toString());
      continue;
    }
    const kind = String(d.get('kind') ?? '');
    if (kind === 'List') {
      const items = d.get('items');
      if (isSeq(items)) for (const [j] of items.items.entries()) injectAt(d, ['items', j], opts, report);
    } else {
      injectAt(d, [], opts, report);
    }
    out.push(d.toString());
  }
  // Documents joined as YAML does (the first keeps its own leading marker if it had one).
  return { text: out.map((s, i) => (i === 0 || s.startsWith('---') ? s : `---\n${s}`)).join(''), report };
}

function injectAt(doc: Document.Parsed, prefix: (string | number)[], opts: ManifestInjectOptions, report: ManifestInjectReport[]): void {
  const kind = String(doc.getIn([...prefix, 'kind']) ?? '');
  const name = String(doc.getIn([...prefix, 'metadata', 'name']) ?? '');
  const tpl = TEMPLATE_PATHS[kind];
  if (tpl === undefined) {
    report.push({ kind: kind || '(none)', name, result: 'not a workload' });
    return;
  }
  const base = [...prefix, ...tpl];
  const podNode = base.length === 0 ? doc.contents : doc.getIn(base, true);
  if (!isMap(podNode)) {
    report.push({ kind, name, result: 'skipped', detail: 'no pod template' });
    return;
  }
  const pod = podNode.toJSON() as PodLike;
  if (!pod?.spec || !Array.isArray(pod.spec.containers)) {
    report.push({ kind, name, result: 'skipped', detail: 'pod template has no containers' });
    return;
  }
  if (opts.onlyAnnotated && pod.metadata?.annotations?.[ANNOTATION_INJECT] !== 'true') {
    report.push({ kind, name, result: 'skipped', detail: `not annotated ${ANNOTATION_INJECT}: "true"` });
    return;
  }
  const before = structuredClone(pod);
  const r = injectPod(pod, opts);
  if (!r.changed) {
    report.push({ kind, name, result: 'skipped', detail: r.skipped ?? 'unchanged' });
    return;
  }
  // Apply the changes to the YAML nodes themselves: everything else (comments included) stays.
  for (const kindKey of ['initContainers', 'containers'] as const) {
    const seq = doc.getIn([...base, 'spec', kindKey], true) as YAMLSeq | undefined;
    (before.spec[kindKey] as Record<string, unknown>[] | undefined)?.forEach((c, ci) => {
      (c.env as { name: string; value?: string }[] | undefined)?.forEach((e, ei) => {
        const after = (pod.spec[kindKey] as Record<string, unknown>[])[ci]!.env as { value?: string }[];
        if (after[ei]!.value !== e.value) doc.setIn([...base, 'spec', kindKey, ci, 'env', ei, 'value'], after[ei]!.value);
      });
    });
    if (kindKey === 'containers' && seq) seq.items.push(doc.createNode(pod.spec.containers.at(-1)));
  }
  const vols = doc.getIn([...base, 'spec', 'volumes'], true) as YAMLSeq | undefined;
  const added = pod.spec.volumes!.slice((before.spec.volumes ?? []).length);
  if (vols && isSeq(vols)) for (const v of added) vols.items.push(doc.createNode(v));
  else doc.setIn([...base, 'spec', 'volumes'], doc.createNode(added));
  const ann = doc.getIn([...base, 'metadata', 'annotations'], true) as YAMLMap | undefined;
  if (ann && isMap(ann)) ann.set('taskgate.io/status', 'injected');
  else doc.setIn([...base, 'metadata', 'annotations'], doc.createNode({ ...(pod.metadata?.annotations ?? {}) }));
  report.push({
    kind,
    name,
    result: 'injected',
    ...(r.rewrites.length ? { detail: r.rewrites.map((w) => `${w.container}.${w.env} -> ${w.to}`).join(', ') } : {}),
  });
}
