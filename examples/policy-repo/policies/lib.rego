# Helpers shared by the protocol rules: effects, lookups, reason prefixes.
package taskgate.lib

# The task type entry in the catalog (undefined for an unknown type).
task_type := data.task_types[input.task.type]

# "task OPS-1 (read-only)": every reason starts with it.
who := sprintf("task %s (%s)", [input.task.id, input.task.type])

# How an effect reads in a reason.
effect_words := {"deny": "is not allowed", "review": "needs review", "allow": "is allowed"}

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

# glob.match with fast paths: glob.match compiles its pattern on every call
# in the WebAssembly target (several µs), and most catalog patterns are
# exact names or match-everything.
glob_one(p, delimiters, s) if {
	p == s
} else if {
	match_all[p]
} else := glob.match(p, delimiters, s) if {
	regex.match(`[*?\[{]`, p)
} else := false

match_all := {"**", "/**"}

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
