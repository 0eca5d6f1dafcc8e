import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MemoryAuditSink } from '../../../core/audit/event.ts';
import { Gatekeeper } from '../../../core/gate.ts';
import { InProcessReviews } from '../../../core/reviews.ts';
import { StaticTaskRegistry } from '../../../core/tasks.ts';
import { envoyPolicyEngine } from '../../../ext-authz/envoy-decision.ts';
import { startExtAuthz, type ExtAuthzHandle } from '../../../ext-authz/server.ts';
import { authzClient, compileAt, envoyCheck, okHeader, type Envoy } from './fixtures.ts';

/**
 * Policies as opa-envoy-plugin's documentation writes them, compiled
 * unchanged (package envoy.authz, `allow` or an object result), served with
 * no taskgate authenticator: the policy alone decides, as in the plugin.
 */

// From the plugin's README / OPA Envoy tutorial, minus io.jwt.* (not available on the WASM target).
const ALLOW_POLICY = `package envoy.authz

import rego.v1

import input.attributes.request.http as http_request

default allow := false

allow if {
	http_request.method == "GET"
	glob.match("/people/*", ["/"], http_request.path)
}

allow if {
	http_request.method == "POST"
	input.parsed_path == ["people"]
	lower(input.parsed_body.firstname) == "alice"
}

allow if {
	http_request.method == "GET"
	input.parsed_path[0] == "search"
	input.parsed_query.lang == ["en"]
}

allow if {
	http_request.method == "PUT"
	input.parsed_body.role == ["admin"]
	input.attributes.source.address.socketAddress.address == "10.1.2.3"
	input.attributes.contextExtensions.team == "payments"
}
`;

// The "result object" form from OPA's Envoy primer: headers, body, status.
const RESULT_POLICY = `package envoy.authz

import rego.v1

import input.attributes.request.http as http_request

default allow := false

allow if http_request.headers["x-user"] == "alice"

headers["x-ext-auth-allow"] := "yes"
headers["x-validated-by"] := "security-checkpoint"

request_headers_to_remove := ["one-auth-header", "another-auth-header"]

response_headers_to_add["x-foo"] := "bar"

query_parameters_to_set := {"debug": "false"}

status_code := 200 if allow
else := 401

body := "Authorized Request" if allow
else := "Unauthorized Request"

dynamic_metadata := {"user": http_request.headers["x-user"]} if allow

result["allowed"] := allow
result["headers"] := headers
result["response_headers_to_add"] := response_headers_to_add
result["request_headers_to_remove"] := request_headers_to_remove
result["query_parameters_to_set"] := query_parameters_to_set
result["body"] := body
result["http_status"] := status_code
result["dynamic_metadata"] := dynamic_metadata if allow
`;

async function serve(rego: string, entrypoint: string): Promise<{ srv: ExtAuthzHandle; envoy: Envoy; audit: MemoryAuditSink }> {
  const engine = envoyPolicyEngine({ entrypoint });
  await engine.load(await compileAt(rego, entrypoint));
  const audit = new MemoryAuditSink();
  const gate = new Gatekeeper({ engine, tasks: new StaticTaskRegistry(), reviews: new InProcessReviews(), audit });
  const srv = await startExtAuthz({ gate, resources: [{ name: 'people-api' }] });
  return { srv, envoy: authzClient(srv.address), audit };
}

describe('opa-envoy-plugin policies run unchanged', () => {
  let a: Awaited<ReturnType<typeof serve>>;
  let b: Awaited<ReturnType<typeof serve>>;
  before(async () => {
    a = await serve(ALLOW_POLICY, 'envoy/authz/allow');
    b = await serve(RESULT_POLICY, 'envoy/authz/result');
  });
  after(async () => {
    a?.envoy.close();
    b?.envoy.close();
    await a?.srv.close();
    await b?.srv.close();
  });

  it('boolean allow on input.attributes.request.http and glob over the path', async () => {
    assert.equal((await a.envoy.check(envoyCheck('GET', '/people/alice', {}, { host: 'api' }))).status.code, 0);
    const denied = await a.envoy.check(envoyCheck('DELETE', '/people/alice'));
    assert.equal(denied.status.code, 7);
    assert.equal(denied.deniedResponse.status.code, 'Forbidden');
    assert.equal(a.audit.ofType('decision').at(-1)!.decision, 'deny');
  });

  it('parsed_body from a JSON body and from a form body', async () => {
    const json = { 'content-type': 'application/json' };
    assert.equal((await a.envoy.check(envoyCheck('POST', '/people', json, { body: '{"firstname":"Alice"}' }))).status.code, 0);
    assert.equal((await a.envoy.check(envoyCheck('POST', '/people', json, { body: '{"firstname":"Mallory"}' }))).status.code, 7);
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const put = envoyCheck('PUT', '/people/x', form, { body: 'role=admin', context: { team: 'payments' } });
    assert.equal((await a.envoy.check(put)).status.code, 0, 'form body, source address and context extensions');
  });

  it('a body cut short by Envoy (with_request_body) is truncated_body and not parsed', async () => {
    const req = envoyCheck('POST', '/people', { 'content-type': 'application/json', 'content-length': '5000' }, { body: '{"firstname":"Alice"' });
    assert.equal((await a.envoy.check(req)).status.code, 7);
  });

  it('parsed_query', async () => {
    assert.equal((await a.envoy.check(envoyCheck('GET', '/search?q=x&lang=en'))).status.code, 0);
    assert.equal((await a.envoy.check(envoyCheck('GET', '/search?q=x&lang=fr'))).status.code, 7);
  });

  it('object result: headers, headers to remove, response headers, query parameters, dynamic metadata on allow', async () => {
    const res = await b.envoy.check(envoyCheck('GET', '/people', { 'x-user': 'alice' }));
    assert.equal(res.status.code, 0);
    assert.equal(okHeader(res, 'x-ext-auth-allow'), 'yes');
    assert.equal(okHeader(res, 'x-validated-by'), 'security-checkpoint');
    assert.match(okHeader(res, 'x-taskgate-decision-id') ?? '', /^[0-9a-f-]{36}$/);
    assert.ok(res.okResponse.headersToRemove.includes('one-auth-header'));
    assert.ok(res.okResponse.headersToRemove.includes('another-auth-header'));
    assert.deepEqual(res.okResponse.responseHeadersToAdd.map((h: any) => [h.header.key, h.header.value]), [['x-foo', 'bar']]);
    assert.deepEqual(res.okResponse.queryParametersToSet, [{ key: 'debug', value: 'false' }]);
    assert.equal(res.dynamicMetadata.fields.user.stringValue, 'alice');
  });

  it('object result: the policy\'s status, body and headers on deny', async () => {
    const res = await b.envoy.check(envoyCheck('GET', '/people', { 'x-user': 'mallory' }));
    assert.equal(res.status.code, 16, 'http_status 401 is UNAUTHENTICATED (any non-OK status is a deny to Envoy)');
    assert.equal(res.deniedResponse.status.code, 'Unauthorized');
    assert.equal(res.deniedResponse.body, 'Unauthorized Request');
    const h = Object.fromEntries(res.deniedResponse.headers.map((x: any) => [x.header.key, x.header.value]));
    assert.equal(h['x-validated-by'], 'security-checkpoint');
  });

  it('a malformed decision is a deny with the reason (fail closed)', async () => {
    const bad = await serve('package envoy.authz\nimport rego.v1\nallow := {"allowed": "yes"}\n', 'envoy/authz/allow');
    try {
      const res = await bad.envoy.check(envoyCheck('GET', '/people/x'));
      assert.equal(res.status.code, 7);
      assert.match(JSON.parse(res.deniedResponse.body).message, /decision.allowed must be a boolean/);
    } finally {
      bad.envoy.close();
      await bad.srv.close();
    }
  });
});
