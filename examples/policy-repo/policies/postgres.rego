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

consts := lib.consts.postgres

# Operations denied unless the task type's `dangerous` map allows them
# (by name, or "*" for all): commands, statement flags and functions
# (policies/constants/data.yaml).
dangerous_commands := consts.dangerous_commands

dangerous_flags := consts.dangerous_flags

dangerous_function(name) if consts.dangerous_functions[name]

dangerous_function(name) if {
	some p in consts.dangerous_function_prefixes
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

verdicts contains lib.verdict("deny", concat("", [lib.who, " grants no PostgreSQL access"])) if {
	active
	lib.task_type
	not cfg
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": the request carries no SQL statement"])) if {
	handled
	count(statements) == 0
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": ", msg, " protocol messages are not allowed through taskgate"])) if {
	handled
	msg := input.request.message
	consts.refused_messages[msg]
}

# ---- per statement -------------------------------------------------------

# A statement without the fields the rules read would match no rule and so
# produce no verdict: refuse it outright (fail closed).
verdicts contains lib.verdict("deny", concat("", [lib.who, ": statement ", lib.str(i + 1), " is malformed (command, class, tables, functions and flags are required)"])) if {
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

verdicts contains lib.verdict("deny", concat("", [lib.who, ": statement ", lib.str(i + 1), " could not be parsed (", lib.str(object.get(s, "text", "")), "); unparseable SQL is always denied"])) if {
	handled
	some i, s in statements
	unparseable(s)
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", lib.str(s.command), " (", lib.str(s.class), ") ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some s in statements
	not unparseable(s)
	not dangerous_commands[s.command]
	e := command_effect(s)
	e != "allow"
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", s.command, " is a dangerous operation and ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some s in statements
	dangerous_commands[s.command]
	e := dangerous_effect(s.command)
	e != "allow"
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", lib.str(s.command), " with ", flag, " is a dangerous operation and ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some s in statements
	some flag in s.flags
	dangerous_flags[flag]
	e := dangerous_effect(flag)
	e != "allow"
}

# COPY to or from a file on the database server (neither STDIN/STDOUT nor PROGRAM).
verdicts contains lib.verdict(e, concat("", [lib.who, ": COPY to or from a server-side file is a dangerous operation and ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some s in statements
	s.command == "COPY"
	not copy_client(object.get(s, "flags", []))
	e := dangerous_effect("copy_file")
	e != "allow"
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", lib.str(s.command), " with flag ", flag, " ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some s in statements
	some flag in s.flags
	e := cfg.flags[flag]
	e != "allow"
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", lib.str(s.command), " calls ", name, "(), which ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some s in statements
	some f in s.functions
	name := fn_name(f)
	e := function_effect(name)
	e != "allow"
}

copy_client(flags) if {
	some f in flags
	consts.copy_client_flags[f]
}

function_effect(name) := e if {
	e := cfg.functions[name]
} else := dangerous_effect(name) if {
	dangerous_function(name)
} else := "allow"

verdicts contains lib.verdict("deny", concat("", [lib.who, ": ", lib.str(s.command), " reads ", name, ", which task type ", input.task.type, " may not read"])) if {
	handled
	some s in statements
	some t in s.tables
	t.access != "write"
	name := table_name(t)
	not lib.table_any(object.get(tables_cfg, "read", []), t)
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": ", lib.str(s.command), " writes ", name, ", which task type ", input.task.type, " may not write"])) if {
	handled
	some s in statements
	some t in s.tables
	t.access == "write"
	name := table_name(t)
	not lib.table_any(object.get(tables_cfg, "write", []), t)
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": writing ", name, " (", lib.str(s.command), ") ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some s in statements
	some t in s.tables
	t.access == "write"
	name := table_name(t)
	lib.table_any(object.get(tables_cfg, "write", []), t)
	e := object.get(cfg, "write_effect", "allow")
	e != "allow"
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": ", lib.str(s.command), " touches ", name, ", which is off limits for task type ", input.task.type])) if {
	handled
	some s in statements
	some t in s.tables
	name := table_name(t)
	lib.table_any(object.get(tables_cfg, "deny", []), t)
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": ", lib.str(s.command), " without a WHERE clause is not allowed: task type ", input.task.type, " changes rows only with a WHERE clause"])) if {
	handled
	cfg.require_where == true
	some s in statements
	missing_where(s)
}

missing_where(s) if s.has_where == false

missing_where(s) if {
	consts.where_commands[s.command]
	not s.has_where
}
