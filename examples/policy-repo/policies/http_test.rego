# Unit tests of the HTTP and Kubernetes rules.
package taskgate_test

import data.taskgate

http_req(type, request) := replace(base, {
	"task": object.union(base.task, {"type": type}),
	"resource": {"protocol": "http", "name": "cluster", "labels": {}},
	"request": object.union({"method": "GET", "path": "/", "query": {}, "headers": {}, "host": "h"}, request),
})

kube(verb, group, resource, sub, ns, name) := {"verb": verb, "api_group": group, "version": "v1", "resource": resource, "subresource": sub, "namespace": ns, "name": name}

http_cases := [
	["read-only", {"path": "/api/v1/namespaces/shop/pods", "kubernetes": kube("list", "", "pods", "", "shop", "")}, "allow", "allows"],
	["read-only", {"path": "/api/v1/namespaces/shop/secrets/x", "kubernetes": kube("get", "", "secrets", "", "shop", "x")}, "deny", "get secrets \"x\" in namespace shop"],
	["read-only", {"path": "/api/v1/nodes", "kubernetes": kube("delete", "", "nodes", "", "", "n1")}, "deny", "delete nodes \"n1\" (cluster-wide)"],
	["read-only", {"path": "/api/v1/nodes/n1/proxy", "kubernetes": kube("get", "", "nodes", "proxy", "", "n1")}, "deny", "nodes/proxy"],
	["read-only", {"path": "/version", "kubernetes": object.union(kube("get", "", "", "", "", ""), {"non_resource": true})}, "allow", "allows"],
	["read-only", {"path": "/metrics", "kubernetes": object.union(kube("get", "", "", "", "", ""), {"non_resource": true})}, "deny", "get /metrics is not allowed"],
	["read-only", {"path": "/status"}, "allow", "allows"],
	["read-only", {"method": "delete", "path": "/orders/1"}, "deny", "delete /orders/1 is not allowed"],
	["read-only", {"path": "/a//b"}, "deny", "not in canonical form"],
	["read-only", {"path": "/a/../admin"}, "deny", "not in canonical form"],
	["incident-debug", {"method": "POST", "path": "/admin/restart"}, "review", "POST /admin/restart needs review"],
	["incident-debug", {"path": "/x", "kubernetes": kube("delete", "", "pods", "", "shop", "p")}, "review", "delete pods \"p\" in namespace shop needs review"],
	["deploy", {"path": "/x", "kubernetes": kube("patch", "apps", "deployments", "scale", "shop", "web")}, "allow", "allows"],
	["deploy", {"path": "/x", "kubernetes": kube("create", "apps", "deployments", "", "shop", "")}, "review", "create deployments in namespace shop needs review"],
	["break-glass", {"method": "PUT", "path": "/anything"}, "review", "PUT /anything needs review"],
	["data-fix", {"path": "/"}, "deny", "grants no HTTP access"],
]

test_http_rules if {
	every c in http_cases {
		d := decide(http_req(c[0], c[1]))
		d.result == c[2]
		reason_has(d, c[3])
	}
}

scoped_catalog := {"scoped": {"description": "x", "http": {"kubernetes": [{"verbs": ["get"], "resources": ["pods"], "namespaces": ["shop"], "names": ["web", "api"], "effect": "allow"}]}}}

test_http_namespace_and_name_scoping if {
	ok := http_req("scoped", {"path": "/x", "kubernetes": kube("get", "", "pods", "", "shop", "api")})
	d1 := taskgate.decision with input as ok with time.now_ns as june with data.task_types as scoped_catalog
	d1.result == "allow"
	other := http_req("scoped", {"path": "/x", "kubernetes": kube("get", "", "pods", "", "billing", "api")})
	d2 := taskgate.decision with input as other with time.now_ns as june with data.task_types as scoped_catalog
	d2.result == "deny"
}

# non_canonical is the regex it replaced, without compiling a regex per call.
canonical_paths := [
	"/", "", "/api/v1/pods", "/a/./b", "/a/../b", "/..", "/.", "./a", "../a", "..", ".", "/a/...", "/a/.b", "/a.b/c.",
	"//a", "/a//", "/a%2fb", "/a%2Fb", "/a%2eb", "/a%2E", "/a%20b", "/a%2", "/a\\b", "/static/app.js", "/.well-known/x",
]

regex_non_canonical(path) if regex.match(`(^|/)\.\.?(/|$)|//|%2[fFeE]|\\`, path)

canonical_agrees(path) if {
	taskgate.http.non_canonical(path)
	regex_non_canonical(path)
}

canonical_agrees(path) if {
	not taskgate.http.non_canonical(path)
	not regex_non_canonical(path)
}

test_non_canonical_is_the_regex if {
	every path in canonical_paths {
		canonical_agrees(path)
	}
}
