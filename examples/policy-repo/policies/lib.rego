# Helpers shared by the protocol rules: effects, lookups, reason prefixes.
package taskgate.lib

# The task type entry in the catalog (undefined for an unknown type).
task_type := data.task_types[input.task.type]

# Fixed sets and words (policies/constants/data.yaml).
consts := data.constants

# "task OPS-1 (read-only)": every reason starts with it.
who := concat("", ["task ", str(input.task.id), " (", str(input.task.type), ")"])

# How an effect reads in a reason.
effect_words := {"deny": "is not allowed", "review": "needs review", "allow": "is allowed"}

# Reasons are built with concat, not sprintf: opa-wasm runs sprintf in
# JavaScript, a JSON round trip of ~4 µs per call, while concat is native.
# str renders any value the way it reads in a reason (strings as they are).
str(x) := x if {
	is_string(x)
} else := json.marshal(x)

verdict(effect, reason) := {"effect": effect, "reason": reason}

# m[key], else the wildcard entry m["*"], else deny (an unlisted operation is denied).
lookup(m, key) := e if {
	e := m[key]
} else := e if {
	e := m["*"]
} else := "deny"

# The most restrictive of a set of effects: deny > review > allow. Undefined for an empty set.
strongest(effects) := "deny" if {
	"deny" in effects
} else := "review" if {
	"review" in effects
} else := "allow" if {
	"allow" in effects
}

glob_any(patterns, delimiters, s) if {
	some p in patterns
	glob_one(p, delimiters, s)
}

# glob_one(p, delimiters, s) is exactly glob.match(p, delimiters, s) (delimiters
# [] means ["."], null means none, as in glob.match), with fast paths for the
# pattern shapes catalogs use: glob.match (and regex.match) compile their
# pattern on every call in the WebAssembly target, several µs each, while the
# string builtins below are native and cheap. lib_test.rego checks the
# equivalence against glob.match shape by shape.
#
#   literal      "pods", "/api"       p == s
#   everything   "**"                 true
#   L**          "/apis/**"           s starts with L
#   L*           "/usr/bin/*"         s starts with L, no delimiter after L
#   *L           "*/proxy"            s ends with L, no delimiter before L
#   *L*          "*-exec*"            s contains L and no delimiter (L has none)
#
# L is literal (no glob metacharacter); anything else goes to glob.match.
glob_one(p, delimiters, s) := glob_literal(p, s) if {
	not glob_meta(p)
} else if {
	p == "**"
} else := startswith(s, lit) if {
	endswith(p, "**")
	lit := substring(p, 0, count(p) - 2)
	not glob_meta(lit)
} else := glob_tail(lit, glob_delims(delimiters), s) if {
	endswith(p, "*")
	lit := substring(p, 0, count(p) - 1)
	not glob_meta(lit)
} else := glob_head(lit, glob_delims(delimiters), s) if {
	startswith(p, "*")
	lit := substring(p, 1, -1)
	not glob_meta(lit)
} else := glob_inner(lit, glob_delims(delimiters), s) if {
	count(p) > 2
	startswith(p, "*")
	endswith(p, "*")
	lit := substring(p, 1, count(p) - 2)
	not glob_meta(lit)
	not has_delim(lit, glob_delims(delimiters))
} else := glob.match(p, delimiters, s)

# Characters that make a glob.match pattern more than a literal string.
glob_meta(p) if contains(p, "*")

glob_meta(p) if contains(p, "?")

glob_meta(p) if contains(p, "[")

glob_meta(p) if contains(p, "]")

glob_meta(p) if contains(p, "{")

glob_meta(p) if contains(p, "}")

glob_meta(p) if contains(p, "\\")

glob_delims(d) := [] if {
	d == null
} else := ["."] if {
	count(d) == 0
} else := d

has_delim(s, delims) if {
	some d in delims
	contains(s, d)
}

glob_literal(p, s) if {
	p == s
} else := false

# "L*": L, then any run of non-delimiters.
glob_tail(lit, delims, s) if {
	startswith(s, lit)
	not has_delim(substring(s, count(lit), -1), delims)
} else := false

# "*L": any run of non-delimiters, then L.
glob_head(lit, delims, s) if {
	endswith(s, lit)
	not has_delim(substring(s, 0, count(s) - count(lit)), delims)
} else := false

# "*L*" with no delimiter in L: s contains L and no delimiter at all.
glob_inner(lit, delims, s) if {
	contains(s, lit)
	not has_delim(s, delims)
} else := false

# Table patterns are schema.table; "*.*" is every table, "app.*" every table in app.
table_match(p, schema, name) if {
	p == "*.*"
} else if {
	p == concat(".", [schema, "*"])
} else := glob_one(p, ["."], concat(".", [schema, name]))

table_any(patterns, t) if {
	some p in patterns
	table_match(p, t.schema, t.name)
}

# "*" matches anything; otherwise membership.
listed(values, _) if "*" in values

listed(values, v) if v in values

deny_decision(reasons) := {"result": "deny", "reasons": reasons, "mask": [], "obligations": {}}
