# Unit tests of the PostgreSQL rules: one row per rule, checked with `every`.
package taskgate_test

import data.taskgate

pg(type, statements) := replace(base, {"task": object.union(base.task, {"type": type}), "request": {"message": "query", "statements": statements}})

stmt(command, class, tables, extra) := object.union({"command": command, "class": class, "tables": tables, "functions": [], "flags": [], "text": command}, extra)

tbl(schema, name, access) := {"schema": schema, "name": name, "access": access}

pg_cases := [
	["read-only", [stmt("SELECT", "read", [tbl("public", "orders", "read")], {})], "allow", "allows this request"],
	["read-only", [stmt("DROP TABLE", "ddl", [tbl("public", "orders", "write")], {})], "deny", "DROP TABLE (ddl) is not allowed"],
	["read-only", [stmt("UNPARSEABLE", "unparseable", [], {})], "deny", "could not be parsed"],
	["read-only", [], "deny", "carries no SQL statement"],
	["read-only", [stmt("SET ROLE", "session", [], {})], "deny", "SET ROLE is a dangerous operation"],
	["read-only", [stmt("COPY", "read", [tbl("public", "orders", "read")], {"flags": ["copy_program"]})], "deny", "with copy_program"],
	["read-only", [stmt("COPY", "read", [tbl("public", "orders", "read")], {"flags": ["copy_to"]})], "deny", "server-side file"],
	["read-only", [stmt("COPY", "read", [tbl("public", "orders", "read")], {"flags": ["copy_to", "copy_stdout"]})], "allow", "allows"],
	["read-only", [stmt("SELECT", "read", [tbl("public", "orders", "read")], {"flags": ["for_update"]})], "deny", "flag for_update"],
	["read-only", [stmt("SELECT", "read", [], {"functions": ["pg_catalog.pg_read_file"]})], "deny", "calls pg_read_file()"],
	["read-only", [stmt("SELECT", "read", [], {"functions": ["dblink_connect"]})], "deny", "calls dblink_connect()"],
	["read-only", [stmt("SELECT", "read", [], {"functions": ["lower", "now"]})], "allow", "allows"],
	["read-only", [stmt("SELECT", "read", [tbl("pg_catalog", "pg_authid", "read")], {})], "deny", "off limits"],
	["read-only", [stmt("SELECT", "read", [tbl("public", "orders", "write")], {"flags": ["data_modifying_cte"]})], "deny", "may not write"],
	["data-fix", [stmt("UPDATE", "write", [tbl("public", "orders", "write")], {"has_where": false})], "deny", "without a WHERE clause"],
	["data-fix", [stmt("DELETE", "write", [tbl("public", "orders", "write")], {})], "deny", "without a WHERE clause"],
	["data-fix", [stmt("DELETE", "write", [tbl("public", "orders", "write")], {"has_where": true})], "review", "DELETE (write) needs review"],
	["data-fix", [stmt("SELECT", "read", [tbl("pg_catalog", "pg_class", "read")], {})], "deny", "off limits"],
	["data-fix", [stmt("SELECT", "read", [tbl("public", "orders", "read")], {"flags": ["into"]})], "deny", "flag into"],
	["schema-migration", [stmt("CREATE FUNCTION", "ddl", [], {})], "review", "dangerous operation and needs review"],
	["schema-migration", [stmt("CREATE TABLE", "ddl", [tbl("app", "x", "write")], {})], "review", "writing app.x (CREATE TABLE) needs review"],
	["incident-debug", [stmt("SELECT", "read", [], {"functions": ["pg_cancel_backend"]})], "review", "calls pg_cancel_backend()"],
	["break-glass", [stmt("SELECT", "read", [], {"functions": ["lo_export"]})], "review", "calls lo_export()"],
	["deploy", [stmt("SELECT", "read", [], {})], "deny", "grants no PostgreSQL access"],
]

test_postgres_rules if {
	every c in pg_cases {
		d := decide(pg(c[0], c[1]))
		d.result == c[2]
		reason_has(d, c[3])
	}
}

test_postgres_replication_message if {
	inp := replace(pg("read-only", [select_orders]), {"request": {"message": "replication", "statements": [select_orders]}})
	reason_has(decide(inp), "replication protocol messages are not allowed")
}

test_postgres_explicit_function_allow if {
	cat := {"t": {"description": "x", "postgres": {"classes": {"read": "allow"}, "functions": {"pg_read_file": "allow"}, "tables": {"read": ["*.*"]}}}}
	inp := pg("t", [stmt("SELECT", "read", [], {"functions": ["pg_read_file"]})])
	d := taskgate.decision with input as inp with time.now_ns as june with data.task_types as cat
	d.result == "allow"
}

test_postgres_fn_name if {
	data.taskgate.postgres.fn_name("PG_CATALOG.Set_Config") == "set_config"
}
