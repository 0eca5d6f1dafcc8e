# HTTP and the Kubernetes API: Kubernetes requests (request.kubernetes) are
# matched against `http.kubernetes` rules, other HTTP requests against
# `http.routes`. The most restrictive matching rule wins; no match is a deny.
# Input: HttpRequest.
package taskgate.http

import data.taskgate.lib

active if input.resource.protocol == "http"

cfg := lib.task_type.http

handled if {
	active
	cfg
}

request := input.request

kube := request.kubernetes

# Dot segments, doubled slashes and encoded separators: a path that means
# something else to the upstream than to the rules is refused outright.
# (String builtins, not regex.match: the WebAssembly target compiles a regex
# on every call.) Same as (^|/)\.\.?(/|$)|//|%2[fFeE]|\\ .
non_canonical(path) if {
	contains(path, ".")
	some seg in split(path, "/")
	dot_segments[seg]
}

non_canonical(path) if contains(path, "//")

non_canonical(path) if contains(path, "\\")

non_canonical(path) if {
	contains(path, "%")
	some enc in ["%2f", "%2F", "%2e", "%2E"]
	contains(path, enc)
}

dot_segments := {".": true, "..": true}

verdicts contains lib.verdict("deny", concat("", [lib.who, " grants no HTTP access"])) if {
	active
	lib.task_type
	not cfg
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": path \"", lib.str(request.path), "\" is not in canonical form"])) if {
	handled
	non_canonical(request.path)
}

# ---- Kubernetes ------------------------------------------------------------

kube_fields := lib.consts.http.kube_fields

verdicts contains lib.verdict("deny", concat("", [lib.who, ": malformed kubernetes request (", concat(", ", kube_fields), " must be strings)"])) if {
	handled
	kube
	some f in kube_fields
	not string_field(kube, f)
}

# (`not is_string(kube[f])` would be undefined, not true, for a missing field.)
string_field(obj, f) if is_string(obj[f])

verdicts contains lib.verdict(e, concat("", [lib.who, ": kubernetes ", kube_describe, " ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	kube
	e := kube_effect
	e != "allow"
}

kube_effect := e if {
	e := lib.strongest({r.effect | some r in object.get(cfg, "kubernetes", []); kube_rule_matches(r)})
} else := "deny"

kube_resource := kube.resource if {
	kube.subresource == ""
} else := concat("/", [kube.resource, kube.subresource])

kube_rule_matches(r) if {
	not r.non_resource_urls
	not kube.non_resource == true
	lib.listed(r.verbs, kube.verb)
	lib.listed(object.get(r, "api_groups", ["*"]), kube.api_group)
	resource_match(r.resources)
	lib.listed(object.get(r, "namespaces", ["*"]), kube.namespace)
	lib.listed(object.get(r, "names", ["*"]), kube.name)
}

kube_rule_matches(r) if {
	kube.non_resource == true
	lib.listed(r.verbs, kube.verb)
	lib.glob_any(r.non_resource_urls, ["/"], request.path)
}

# "*" is every resource and subresource (as in Kubernetes RBAC); otherwise a
# glob over resource[/subresource]: "pods", "pods/*", "*/scale".
resource_match(patterns) if "*" in patterns

resource_match(patterns) if lib.glob_any(patterns, ["/"], kube_resource)

kube_describe := concat("", [kube.verb, " ", request.path]) if {
	kube.non_resource == true
} else := concat("", [kube.verb, " ", kube_resource, kube_name, kube_ns])

kube_name := concat("", [" \"", kube.name, "\""]) if kube.name != ""

else := ""

kube_ns := concat("", [" in namespace ", kube.namespace]) if kube.namespace != ""

else := " (cluster-wide)"

# ---- plain HTTP ------------------------------------------------------------

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", lib.str(request.method), " ", lib.str(request.path), " ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	not kube
	e := route_effect
	e != "allow"
}

route_effect := e if {
	e := lib.strongest({r.effect | some r in object.get(cfg, "routes", []); route_matches(r)})
} else := "deny"

route_matches(r) if {
	lib.listed(r.methods, upper(request.method))
	lib.glob_any(r.paths, ["/"], request.path)
}
