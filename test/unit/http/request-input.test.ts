import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { kubernetesRequestInfo } from '../../../sidecar/http/k8s-request-info.ts';
import { normalizeRequestPath, parseQuery } from '../../../sidecar/http/path.ts';
import { bearerToken, buildHttpRequest, taskFromRequest } from '../../../sidecar/http/request-input.ts';

type K = [verb: string, group: string, version: string, resource: string, sub: string, ns: string, name: string];

/** What kubectl sends, and what the API server's RequestInfoFactory makes of it. */
const CORPUS: [string, string, K][] = [
  // kubectl get pods -n shop
  ['GET', '/api/v1/namespaces/shop/pods?limit=500', ['list', '', 'v1', 'pods', '', 'shop', '']],
  // kubectl get pod web-1 -n shop
  ['GET', '/api/v1/namespaces/shop/pods/web-1', ['get', '', 'v1', 'pods', '', 'shop', 'web-1']],
  // kubectl get pods -A
  ['GET', '/api/v1/pods?limit=500', ['list', '', 'v1', 'pods', '', '', '']],
  // kubectl get pods -w
  ['GET', '/api/v1/namespaces/shop/pods?resourceVersion=10&watch=true', ['watch', '', 'v1', 'pods', '', 'shop', '']],
  ['GET', '/api/v1/namespaces/shop/pods?watch=1', ['watch', '', 'v1', 'pods', '', 'shop', '']],
  ['GET', '/api/v1/namespaces/shop/pods?watch=false', ['list', '', 'v1', 'pods', '', 'shop', '']],
  ['GET', '/api/v1/namespaces/shop/pods?watch=yes', ['watch', '', 'v1', 'pods', '', 'shop', '']],
  // kubectl get pod web-1 -w: a watch with a field selector on the name
  ['GET', '/api/v1/namespaces/shop/pods?fieldSelector=metadata.name%3Dweb-1&watch=true', ['watch', '', 'v1', 'pods', '', 'shop', 'web-1']],
  // legacy /watch/ prefix
  ['GET', '/api/v1/watch/namespaces/shop/pods', ['watch', '', 'v1', 'pods', '', 'shop', '']],
  ['GET', '/api/v1/watch/namespaces/shop/pods/web-1', ['watch', '', 'v1', 'pods', '', 'shop', 'web-1']],
  // kubectl logs -f web-1
  ['GET', '/api/v1/namespaces/shop/pods/web-1/log?container=app&follow=true', ['get', '', 'v1', 'pods', 'log', 'shop', 'web-1']],
  // kubectl exec / attach / port-forward
  ['POST', '/api/v1/namespaces/shop/pods/web-1/exec?command=sh&stdin=true&tty=true', ['create', '', 'v1', 'pods', 'exec', 'shop', 'web-1']],
  ['GET', '/api/v1/namespaces/shop/pods/web-1/exec?command=ls', ['get', '', 'v1', 'pods', 'exec', 'shop', 'web-1']],
  ['POST', '/api/v1/namespaces/shop/pods/web-1/attach?stdin=true', ['create', '', 'v1', 'pods', 'attach', 'shop', 'web-1']],
  ['POST', '/api/v1/namespaces/shop/pods/web-1/portforward', ['create', '', 'v1', 'pods', 'portforward', 'shop', 'web-1']],
  // kubectl delete pod web-1 / kubectl delete pods --all
  ['DELETE', '/api/v1/namespaces/shop/pods/web-1', ['delete', '', 'v1', 'pods', '', 'shop', 'web-1']],
  ['DELETE', '/api/v1/namespaces/shop/pods', ['deletecollection', '', 'v1', 'pods', '', 'shop', '']],
  // kubectl create / apply / edit / scale
  ['POST', '/apis/apps/v1/namespaces/shop/deployments', ['create', 'apps', 'v1', 'deployments', '', 'shop', '']],
  ['PUT', '/apis/apps/v1/namespaces/shop/deployments/web', ['update', 'apps', 'v1', 'deployments', '', 'shop', 'web']],
  ['PATCH', '/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=kubectl-edit', ['patch', 'apps', 'v1', 'deployments', '', 'shop', 'web']],
  ['PATCH', '/apis/apps/v1/namespaces/shop/deployments/web/scale', ['patch', 'apps', 'v1', 'deployments', 'scale', 'shop', 'web']],
  ['PUT', '/apis/apps/v1/namespaces/shop/deployments/web/status', ['update', 'apps', 'v1', 'deployments', 'status', 'shop', 'web']],
  // secrets
  ['GET', '/api/v1/namespaces/shop/secrets/db', ['get', '', 'v1', 'secrets', '', 'shop', 'db']],
  // namespaces themselves and their subresources
  ['GET', '/api/v1/namespaces', ['list', '', 'v1', 'namespaces', '', '', '']],
  ['GET', '/api/v1/namespaces/shop', ['get', '', 'v1', 'namespaces', '', 'shop', 'shop']],
  ['PUT', '/api/v1/namespaces/shop/finalize', ['update', '', 'v1', 'namespaces', 'finalize', 'shop', 'shop']],
  ['DELETE', '/api/v1/namespaces/shop', ['delete', '', 'v1', 'namespaces', '', 'shop', 'shop']],
  // cluster-scoped
  ['GET', '/api/v1/nodes/n1', ['get', '', 'v1', 'nodes', '', '', 'n1']],
  ['GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles', ['list', 'rbac.authorization.k8s.io', 'v1', 'clusterroles', '', '', '']],
  // proxy subresource: the rest of the path is the proxied path, not a subresource of the proxy
  ['GET', '/api/v1/namespaces/shop/services/web:http/proxy/admin/users', ['get', '', 'v1', 'services', 'proxy', 'shop', 'web:http']],
  ['GET', '/api/v1/namespaces/shop/pods/web-1/proxy/', ['get', '', 'v1', 'pods', 'proxy', 'shop', 'web-1']],
  // legacy /proxy/ prefix: verb proxy, no subresource
  ['GET', '/api/v1/proxy/namespaces/shop/services/web/admin', ['proxy', '', 'v1', 'services', '', 'shop', 'web']],
  // encoded path: the server routes on the decoded name
  ['GET', '/api/v1/namespaces/sh%6Fp/secrets/d%62', ['get', '', 'v1', 'secrets', '', 'shop', 'db']],
  // duplicate slashes are merged before parsing
  ['DELETE', '/api/v1//namespaces//shop/pods///web-1', ['delete', '', 'v1', 'pods', '', 'shop', 'web-1']],
  // unusual method
  ['OPTIONS', '/api/v1/pods', ['', '', 'v1', 'pods', '', '', '']],
];

const NON_RESOURCE = ['/healthz', '/version', '/api', '/apis', '/apis/apps', '/api/v1', '/openapi/v3', '/livez?verbose', '/metrics'];

describe('Kubernetes request info (as the API server parses it)', () => {
  for (const [method, target, want] of CORPUS) {
    it(`${method} ${target}`, () => {
      const r = buildHttpRequest({ method, target, headers: { host: 'k8s' } }, { kubernetes: true });
      assert.ok(r.ok, !r.ok ? r.reason : '');
      const k = r.request.kubernetes!;
      assert.deepEqual([k.verb, k.api_group, k.version, k.resource, k.subresource, k.namespace, k.name], want);
      assert.equal(k.non_resource, false);
    });
  }
  for (const p of NON_RESOURCE) {
    it(`non-resource ${p}`, () => {
      const r = buildHttpRequest({ method: 'GET', target: p, headers: {} }, { kubernetes: true });
      assert.ok(r.ok);
      assert.equal(r.request.kubernetes!.non_resource, true);
      assert.equal(r.request.kubernetes!.verb, 'get');
      assert.equal(r.request.kubernetes!.resource, '');
    });
  }
  it('the group-qualified path needs a version and a resource to be a resource request', () => {
    assert.equal(kubernetesRequestInfo('GET', '/apis/apps/v1', {}).non_resource, true);
    assert.equal(kubernetesRequestInfo('GET', '/apis/apps/v1/deployments', {}).resource, 'deployments');
  });
  it('a field selector that does not pin metadata.name exactly leaves the name empty', () => {
    assert.equal(kubernetesRequestInfo('GET', '/api/v1/pods', { fieldSelector: ['metadata.name!=x'] }).name, '');
    assert.equal(kubernetesRequestInfo('GET', '/api/v1/pods', { fieldSelector: ['spec.nodeName=n1,metadata.name==a'] }).name, 'a');
    assert.equal(kubernetesRequestInfo('GET', '/api/v1/pods', { fieldSelector: ['metadata.name=..'] }).name, '');
  });
});

describe('ambiguous paths are refused', () => {
  const bad: [string, RegExp][] = [
    ['/api/v1/namespaces/shop/secrets/..', /"\.\."/],
    ['/api/v1/namespaces/shop/../kube-system/secrets', /"\.\."/],
    ['/api/v1/namespaces/shop/%2e%2e/kube-system/secrets', /"\.\."/],
    ['/api/v1/namespaces/shop/./pods', /"\."/],
    ['/api/v1/namespaces/shop%2Fsecrets', /encoded "\/"/],
    ['/api/v1/namespaces/shop%5csecrets', /encoded/],
    ['/api/v1/namespaces/shop%00', /NUL/],
    ['/api/v1/namespaces/%zz', /malformed/],
    ['/api/v1/namespaces\\shop', /backslash/],
    ['/api/v1/namespaces/sh%0aop', /control/],
    ['http://evil/api/v1/pods', /not an absolute path/],
    ['*', /not an absolute path/],
  ];
  for (const [target, why] of bad) {
    it(target, () => {
      const r = buildHttpRequest({ method: 'GET', target, headers: {} }, { kubernetes: true });
      assert.equal(r.ok, false);
      assert.match((r as { reason: string }).reason, why);
    });
  }
  it('rejects a method that is not a token', () => {
    assert.equal(buildHttpRequest({ method: 'GET /x', target: '/', headers: {} }).ok, false);
  });
});

describe('normalisation', () => {
  it('reports when the path was not already canonical, and forwards the canonical form', () => {
    const a = normalizeRequestPath('/api/v1/namespaces/shop/pods');
    assert.ok(a.ok && !a.changed && !a.merged_slashes);
    const enc = normalizeRequestPath('/api/v1/namespaces/sh%6Fp/pods');
    assert.ok(enc.ok && enc.changed && !enc.merged_slashes);
    const b = normalizeRequestPath('/api//v1/namespaces/sh%6Fp/pods?watch=1');
    assert.ok(b.ok);
    assert.equal(b.changed, true);
    assert.equal(b.merged_slashes, true);
    assert.equal(b.canonical, '/api/v1/namespaces/shop/pods');
    assert.equal(b.query, 'watch=1');
    const c = normalizeRequestPath('/api/v1/namespaces/shop/services/web:http/proxy/a%20b');
    assert.ok(c.ok);
    assert.equal(c.canonical, '/api/v1/namespaces/shop/services/web:http/proxy/a%20b');
    assert.equal(c.path, '/api/v1/namespaces/shop/services/web:http/proxy/a b');
    assert.equal(c.changed, false);
  });
  it('keeps a trailing slash', () => {
    const r = normalizeRequestPath('/api/v1/namespaces/shop/pods/web/proxy/');
    assert.ok(r.ok);
    assert.equal(r.path, '/api/v1/namespaces/shop/pods/web/proxy/');
    assert.equal(normalizeRequestPath('/').ok && (normalizeRequestPath('/') as { path: string }).path, '/');
  });
  it('parses the query like Go url.ParseQuery (repeats kept, + is space)', () => {
    assert.deepEqual({ ...parseQuery('a=1&a=2&b=x+y&c&d=%41') }, { a: ['1', '2'], b: ['x y'], c: [''], d: ['A'] });
  });
});

describe('request block', () => {
  it('drops credentials from headers, lower-cases names and joins repeats', () => {
    const r = buildHttpRequest({
      method: 'get',
      target: '/v1/cards?limit=2',
      headers: { Authorization: 'Bearer abc', Cookie: 's=1', 'X-Thing': ['a', 'b'], Host: 'API.example' },
    });
    assert.ok(r.ok);
    assert.equal(r.request.method, 'GET');
    assert.equal(r.request.host, 'api.example');
    assert.deepEqual(r.request.headers, { 'x-thing': 'a, b', host: 'API.example' });
    assert.equal(r.request.kubernetes, undefined);
    assert.equal(r.text, 'GET /v1/cards?limit=2');
  });
  it('fingerprints ignore volatile headers but not the rest of the request', () => {
    const fp = (target: string, headers: Record<string, string>) => {
      const r = buildHttpRequest({ method: 'GET', target, headers });
      assert.ok(r.ok);
      return r.fingerprint;
    };
    const base = fp('/a?x=1&y=2', { 'x-request-id': '1', accept: 'json' });
    assert.equal(base, fp('/a?y=2&x=1', { 'x-request-id': '2', accept: 'json' }));
    assert.notEqual(base, fp('/a?x=1&y=3', { accept: 'json' }));
    assert.notEqual(base, fp('/a?x=1&y=2', { accept: 'yaml' }));
    assert.notEqual(base, fp('/b?x=1&y=2', { accept: 'json' }));
  });
  it('finds the task in the header or a /task/<id> prefix', () => {
    assert.deepEqual(taskFromRequest('/task/OPS-1/api/v1/pods?x=1', {}), { task_id: 'OPS-1', target: '/api/v1/pods?x=1' });
    assert.deepEqual(taskFromRequest('/task/OPS-1', {}), { task_id: 'OPS-1', target: '/' });
    assert.deepEqual(taskFromRequest('/api/v1/pods', { 'X-Taskgate-Task': 'OPS-2' }), { task_id: 'OPS-2', target: '/api/v1/pods' });
    assert.deepEqual(taskFromRequest('/taskforce/x', {}), { target: '/taskforce/x' });
  });
  it('reads bearer tokens only', () => {
    assert.equal(bearerToken({ authorization: 'Bearer t.k.n' }), 't.k.n');
    assert.equal(bearerToken({ Authorization: 'bearer  xyz ' }), 'xyz');
    assert.equal(bearerToken({ authorization: 'Basic Zm9vOmJhcg==' }), undefined);
    assert.equal(bearerToken({}), undefined);
  });
});
