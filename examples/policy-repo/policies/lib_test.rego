# lib.glob_one must be exactly glob.match: every fast path, on every pattern
# shape and delimiter setting, against strings on both sides of each edge.
package taskgate.lib_test

import data.taskgate.lib

glob_patterns := [
	"", "pods", "pods/exec", "/api", "**", "/**", "/apis/**", "a.**", "*", "pods/*", "/usr/bin/*", "public.*",
	"*/proxy", "*.log", "*-exec*", "*system*", "*a.b*", "*/*", "restart *", "status*", "-*", "*:5432",
	"a?c", "[ab]*", "{get,list}", "a\\*", "***", "*a*b*", "db-*.internal:*",
]

glob_delimiters := [[], ["/"], ["."], [".", ":"], null]

glob_subjects := [
	"", "pods", "pods/exec", "pods/exec/x", "/api", "/apis", "/apis/", "/apis/apps/v1", "/", "//", "a.b", "a.",
	"/usr/bin/cat", "/usr/bin/python3.11", "/usr/bin/x/y", "public.orders", "public.a.b", "x/proxy", "a/b/proxy",
	"/proxy", "app.log", "a/app.log", "-name x -exec rm {} ;", ". -exec rm", "-exec", "system(\"rm\")",
	"restart app", "restart app.service", "status", "status nginx.service", "-rf", "db:5432", "db.internal:5432",
	"abc", "a*", "get", "list", "*", "**", "a.b.c", "b", "ab", "db-1.internal:5432",
]

glob_mismatches contains [p, d, s, lib.glob_one(p, d, s), glob.match(p, d, s)] if {
	some p in glob_patterns
	some d in glob_delimiters
	some s in glob_subjects
	lib.glob_one(p, d, s) != glob.match(p, d, s)
}

glob_undefined contains [p, d, s] if {
	some p in glob_patterns
	some d in glob_delimiters
	some s in glob_subjects
	not is_boolean(lib.glob_one(p, d, s))
}

test_glob_one_is_glob_match if {
	count(glob_mismatches) == 0
	count(glob_undefined) == 0
}

test_glob_any if {
	lib.glob_any(["/bin/*", "/usr/bin/*"], [], "/usr/bin/cat")
	not lib.glob_any(["/bin/*", "/usr/bin/*"], [], "/tmp/cat")
	not lib.glob_any([], [], "/bin/cat")
}
