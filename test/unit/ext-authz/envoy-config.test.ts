import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { parse } from 'yaml';
import { envoyProtoIncludeDirs } from '../../../ext-authz/protos.ts';

/**
 * examples/envoy/envoy.yaml against Envoy's own v3 protos (vendored by
 * @grpc/grpc-js-xds): every key must be a field of its message, every enum
 * value must exist, every typed_config must name a known type and match it.
 * No Envoy binary here, so this is the check that the example is not made up.
 */
const FILES = [
  'envoy/config/bootstrap/v3/bootstrap.proto',
  'envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto',
  'envoy/extensions/filters/http/ext_authz/v3/ext_authz.proto',
  'envoy/extensions/filters/http/ext_proc/v3/ext_proc.proto',
  'envoy/extensions/filters/http/router/v3/router.proto',
  'envoy/extensions/transport_sockets/tls/v3/tls.proto',
  'envoy/extensions/upstreams/http/v3/http_protocol_options.proto',
];

async function loadRoot(): Promise<protobuf.Root> {
  const dirs = envoyProtoIncludeDirs();
  const root = new protobuf.Root();
  root.resolvePath = (_origin, target) => {
    for (const d of dirs) if (existsSync(join(d, target))) return join(d, target);
    return target;
  };
  await root.load(FILES, { keepCase: true });
  root.resolveAll();
  return root;
}

const WKT_SCALARS = new Set(['.google.protobuf.Duration', '.google.protobuf.BoolValue', '.google.protobuf.UInt32Value', '.google.protobuf.UInt64Value', '.google.protobuf.StringValue', '.google.protobuf.Struct', '.google.protobuf.Value']);

function check(root: protobuf.Root, type: protobuf.Type, obj: unknown, path: string, errors: string[]): void {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return void errors.push(`${path}: expected an object for ${type.fullName}`);
  for (const [k, v] of Object.entries(obj as Record<string, unknown>)) {
    if (k === '@type') continue;
    const f = type.fields[k];
    if (!f) {
      errors.push(`${path}.${k}: no such field in ${type.fullName}`);
      continue;
    }
    const values = f.map ? Object.values(v as object) : f.repeated ? (v as unknown[]) : [v];
    for (const [i, x] of values.entries()) at(root, f, x, `${path}.${k}${f.repeated || f.map ? `[${i}]` : ''}`, errors);
  }
}

function at(root: protobuf.Root, f: protobuf.Field, x: unknown, path: string, errors: string[]): void {
  const t = f.resolvedType;
  if (t instanceof protobuf.Enum) {
    if (typeof x === 'string' && !(x in t.values)) errors.push(`${path}: ${x} is not a value of ${t.fullName}`);
    return;
  }
  if (!(t instanceof protobuf.Type)) return;
  if (WKT_SCALARS.has(t.fullName)) return;
  if (t.fullName === '.google.protobuf.Any') {
    const url = (x as { '@type'?: string })['@type'];
    if (!url) return void errors.push(`${path}: typed_config without @type`);
    let inner: protobuf.Type;
    try {
      inner = root.lookupType(url.slice(url.lastIndexOf('/') + 1));
    } catch {
      return void errors.push(`${path}: unknown @type ${url}`);
    }
    return check(root, inner, x, path, errors);
  }
  check(root, t, x, path, errors);
}

describe('examples/envoy/envoy.yaml', () => {
  it('is a valid Envoy v3 bootstrap: every field, enum and typed_config exists in the protos', async () => {
    const root = await loadRoot();
    const cfg = parse(await readFile(resolve(import.meta.dirname, '../../../examples/envoy/envoy.yaml'), 'utf8')) as unknown;
    const errors: string[] = [];
    check(root, root.lookupType('envoy.config.bootstrap.v3.Bootstrap'), cfg, 'bootstrap', errors);
    assert.deepEqual(errors, []);
  });
  it('the checker catches a misspelt field and a wrong enum (it can fail)', async () => {
    const root = await loadRoot();
    const errors: string[] = [];
    const bad = { static_resources: { clusters: [{ name: 'x', typee: 'STRICT_DNS', type: 'NOPE' }] } };
    check(root, root.lookupType('envoy.config.bootstrap.v3.Bootstrap'), bad, 'bootstrap', errors);
    assert.equal(errors.length, 2);
  });
  it('fails closed: ext_authz and ext_proc do not allow on failure', async () => {
    const text = await readFile(resolve(import.meta.dirname, '../../../examples/envoy/envoy.yaml'), 'utf8');
    assert.equal((text.match(/failure_mode_allow: false/g) ?? []).length, 2);
    assert.doesNotMatch(text, /failure_mode_allow: true/);
  });
});
