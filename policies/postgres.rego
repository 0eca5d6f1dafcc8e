# PostgreSQL: every statement of the request is checked against the task
# type's `postgres` section. A request is allowed only if every statement is.
# Input: PostgresRequest (core/policy-contract.ts), statements classified by
# the real PostgreSQL parser (sidecar/postgres/classify.ts).
package taskgate.postgres

import data.taskgate.lib

active if input.resource.protocol == "postgres"

cfg := lib.task_type.postgres

handled if {
	active
	cfg
}

statements := object.get(input.request, "statements", [])

# Operations denied unless the task type's `dangerous` map allows them
# (by name, or "*" for all). Commands, statement flags and functions.
dangerous_commands := {
	"ALTER SYSTEM", "SET ROLE", "SET SESSION AUTHORIZATION", "DO", "CREATE FUNCTION",
	"CREATE PROCEDURE", "CREATE LANGUAGE", "CREATE EXTENSION", "LOAD", "CREATE SERVER",
	"CREATE USER MAPPING", "IMPORT FOREIGN SCHEMA", "CREATE ROLE", "ALTER ROLE", "DROP ROLE",
	"CREATE SUBSCRIPTION", "ALTER SUBSCRIPTION", "CREATE PUBLICATION", "ALTER PUBLICATION",
}

dangerous_flags := {"copy_program"}

dangerous_functions := {
	"pg_read_file", "pg_read_binary_file", "pg_stat_file", "lo_export", "lo_import",
	"pg_terminate_backend", "pg_cancel_backend", "set_config", "pg_reload_conf",
	"pg_rotate_logfile", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
	"pg_backup_start", "pg_backup_stop", "pg_start_backup", "pg_stop_backup",
	"pg_create_logical_replication_slot", "pg_create_physical_replication_slot",
	"pg_drop_replication_slot", "pg_logical_emit_message", "pg_logdir_ls",
	"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
}

dangerous_function_prefixes := ["dblink", "pg_ls_", "pg_file_", "pg_replication_origin_"]

dangerous_function(name) if dangerous_functions[name]

dangerous_function(name) if {
	some p in dangerous_function_prefixes
	startswith(name, p)
}

dangerous_effect(name) := lib.lookup(object.get(cfg, "dangerous", {}), name)

# pg_catalog.set_config -> set_config
fn_name(f) := lower(parts[count(parts) - 1]) if parts := split(f, ".")

table_name(t) := concat(".", [t.schema, t.name])

tables_cfg := object.get(cfg, "tables", {})

unparseable(s) if s.command == "UNPARSEABLE"

unparseable(s) if s.class == "unparseable"

# The command's own effect: by command name, else by class, else "*", else deny.
command_effect(s) := e if {
	e := cfg.commands[s.command]
} else := lib.lookup(object.get(cfg, "classes", {}), s.class)

# ---- request-level -------------------------------------------------------

verdicts contains lib.verdict("deny", sprintf("%s grants no PostgreSQL access", [lib.who])) if {
	active
	lib.task_type
	not cfg
}

verdicts contains lib.verdict("deny", sprintf("%s: the request carries no SQL statement", [lib.who])) if {
	handled
	count(statements) == 0
}

verdicts contains lib.verdict("deny", sprintf("%s: %s protocol messages are not allowed through taskgate", [lib.who, msg])) if {
	handled
	msg := input.request.message
	msg in {"function_call", "replication"}
}

# ---- per statement -------------------------------------------------------

# A statement without the fields the rules read would match no rule and so
# produce no verdict: refuse it outright (fail closed).
verdicts contains lib.verdict("deny", sprintf("%s: statement %d is malformed (command, class, tables, functions and flags are required)", [lib.who, i + 1])) if {
	handled
	some i, s in statements
	not well_formed(s)
}

well_formed(s) if {
	is_string(s.command)
	is_string(s.class)
	is_array(s.tables)
	is_array(object.get(s, "functions", []))
	is_array(object.get(s, "flags", []))
	every t in s.tables {
		is_string(t.schema)
		is_string(t.name)
		is_string(t.access)
	}
}

verdicts contains lib.verdict("deny", sprintf("%s: statement %d could not be parsed (%s); unparseable SQL is always denied", [lib.who, i + 1, object.get(s, "text", "")])) if {
	handled
	some i, s in statements
	unparseable(s)
}

verdicts contains lib.verdict(e, sprintf("%s: %s (%s) %s for task type %s", [lib.who, s.command, s.class, lib.effect_words[e], input.task.type])) if {
	handled
	some s in statements
	not unparseable(s)
	not dangerous_commands[s.command]
	e := command_effect(s)
	e != "allow"
}

verdicts contains lib.verdict(e, sprintf("%s: %s is a dangerous operation and %s for task type %s", [lib.who, s.command, lib.effect_words[e], input.task.type])) if {
	handled
	some s in statements
	dangerous_commands[s.command]
	e := dangerous_effect(s.command)
	e != "allow"
}

verdicts contains lib.verdict(e, sprintf("%s: %s with %s is a dangerous operation and %s for task type %s", [lib.who, s.command, flag, lib.effect_words[e], input.task.type])) if {
	handled
	some s in statements
	some flag in s.flags
	dangerous_flags[flag]
	e := dangerous_effect(flag)
	e != "allow"
}

# COPY to or from a file on the database server (neither STDIN/STDOUT nor PROGRAM).
verdicts contains lib.verdict(e, sprintf("%s: COPY to or from a server-side file is a dangerous operation and %s for task type %s", [lib.who, lib.effect_words[e], input.task.type])) if {
	handled
	some s in statements
	s.command == "COPY"
	flags := object.get(s, "flags", [])
	not "copy_program" in flags
	not "copy_stdin" in flags
	not "copy_stdout" in flags
	e := dangerous_effect("copy_file")
	e != "allow"
}

verdicts contains lib.verdict(e, sprintf("%s: %s with flag %s %s for task type %s", [lib.who, s.command, flag, lib.effect_words[e], input.task.type])) if {
	handled
	some s in statements
	some flag in s.flags
	e := cfg.flags[flag]
	e != "allow"
}

verdicts contains lib.verdict(e, sprintf("%s: %s calls %s(), which %s for task type %s", [lib.who, s.command, name, lib.effect_words[e], input.task.type])) if {
	handled
	some s in statements
	some f in s.functions
	name := fn_name(f)
	e := function_effect(name)
	e != "allow"
}

function_effect(name) := e if {
	e := cfg.functions[name]
} else := dangerous_effect(name) if {
	dangerous_function(name)
} else := "allow"

verdicts contains lib.verdict("deny", sprintf("%s: %s reads %s, which task type %s may not read", [lib.who, s.command, name, input.task.type])) if {
	handled
	some s in statements
	some t in s.tables
	t.access != "write"
	name := table_name(t)
	not lib.table_any(object.get(tables_cfg, "read", []), t)
}

verdicts contains lib.verdict("deny", sprintf("%s: %s writes %s, which task type %s may not write", [lib.who, s.command, name, input.task.type])) if {
	handled
	some s in statements
	some t in s.tables
	t.access == "write"
	name := table_name(t)
	not lib.table_any(object.get(tables_cfg, "write", []), t)
}

verdicts contains lib.verdict(e, sprintf("%s: writing %s (%s) %s for task type %s", [lib.who, name, s.command, lib.effect_words[e], input.task.type])) if {
	handled
	some s in statements
	some t in s.tables
	t.access == "write"
	name := table_name(t)
	lib.table_any(object.get(tables_cfg, "write", []), t)
	e := object.get(cfg, "write_effect", "allow")
	e != "allow"
}

verdicts contains lib.verdict("deny", sprintf("%s: %s touches %s, which is off limits for task type %s", [lib.who, s.command, name, input.task.type])) if {
	handled
	some s in statements
	some t in s.tables
	name := table_name(t)
	lib.table_any(object.get(tables_cfg, "deny", []), t)
}

verdicts contains lib.verdict("deny", sprintf("%s: %s without a WHERE clause is not allowed: task type %s changes rows only with a WHERE clause", [lib.who, s.command, input.task.type])) if {
	handled
	cfg.require_where == true
	some s in statements
	missing_where(s)
}

missing_where(s) if s.has_where == false

missing_where(s) if {
	s.command in {"UPDATE", "DELETE"}
	not s.has_where
}
