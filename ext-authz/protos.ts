import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { loadPackageDefinition, type ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';

/**
 * Envoy's service definitions, loaded at start from the .proto files that
 * @grpc/grpc-js-xds ships (envoy-api, xds, googleapis, protoc-gen-validate);
 * no copies in this repository.
 *
 * Field names are lowerCamelCase (the protojson names opa-envoy-plugin
 * policies use), int64 as strings, enums as names, bytes as Buffers; oneofs
 * are read by which field is present (no virtual oneof fields that would
 * leak into `input.attributes`).
 */
export const PROTO_OPTIONS: Options = { keepCase: false, longs: String, enums: String, defaults: false, oneofs: false };

const FILES = ['envoy/service/auth/v3/external_auth.proto', 'envoy/service/ext_proc/v3/external_processor.proto'];

export function envoyProtoIncludeDirs(): string[] {
  const require = createRequire(import.meta.url);
  const deps = join(dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => join(deps, d));
}

export interface EnvoyServices {
  authorization: ServiceDefinition;
  externalProcessor: ServiceDefinition;
  /** Client constructors, for tests and the benchmark. */
  AuthorizationClient: ServiceClientCtor;
  ExternalProcessorClient: ServiceClientCtor;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type ServiceClientCtor = new (address: string, credentials: import('@grpc/grpc-js').ChannelCredentials, options?: object) => any;

let cached: EnvoyServices | undefined;

export function envoyServices(): EnvoyServices {
  if (cached) return cached;
  const def = loadSync(FILES, { ...PROTO_OPTIONS, includeDirs: envoyProtoIncludeDirs() });
  const pkg = loadPackageDefinition(def) as unknown as {
    envoy: { service: { auth: { v3: { Authorization: ServiceClientCtor & { service: ServiceDefinition } } }; ext_proc: { v3: { ExternalProcessor: ServiceClientCtor & { service: ServiceDefinition } } } } };
  };
  const auth = pkg.envoy.service.auth.v3.Authorization;
  const proc = pkg.envoy.service.ext_proc.v3.ExternalProcessor;
  cached = { authorization: auth.service, externalProcessor: proc.service, AuthorizationClient: auth, ExternalProcessorClient: proc };
  return cached;
}
