# SSH: the channel kind, then every program the shell parser found in the
# command (sequences, pipes, $(...), sudo, env, bash -c, xargs, find -exec ...)
# is checked against the task type's `ssh` section. Input: SshRequest.
package taskgate.ssh

import data.taskgate.lib

active if input.resource.protocol == "ssh"

cfg := lib.task_type.ssh

handled if {
	active
	cfg
}

request := input.request

consts := lib.consts.ssh

# Kinds whose command line is made of programs.
command_kinds := consts.command_kinds

programs := object.get(request, "programs", [])

# Output redirections that write a file, and targets that are harmless.
write_redirects := consts.write_redirects

harmless_targets := consts.harmless_targets

verdicts contains lib.verdict("deny", concat("", [lib.who, " grants no SSH access"])) if {
	active
	lib.task_type
	not cfg
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": SSH ", lib.str(kind), " ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	kind := object.get(request, "kind", "unknown")
	e := lib.lookup(object.get(cfg, "kinds", {}), kind)
	e != "allow"
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": the command could not be parsed (", lib.str(object.get(request, "parse_error", "parse error")), "); unparseable commands are always denied"])) if {
	handled
	request.unparseable == true
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": the command runs no program taskgate can identify"])) if {
	handled
	command_kinds[request.kind]
	not request.unparseable == true
	count(programs) == 0
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": program ", lib.str(i + 1), " is malformed (name and argv are required)"])) if {
	handled
	command_kinds[request.kind]
	some i, p in programs
	not well_formed(p)
}

well_formed(p) if {
	is_string(p.name)
	is_array(object.get(p, "argv", []))
	is_array(object.get(p, "via", []))
}

# A program whose name is computed at run time ($X, $(echo rm), `...`) cannot be judged.
verdicts contains lib.verdict("deny", concat("", [lib.who, ": program name \"", lib.str(p.name), "\" is computed at run time and cannot be checked"])) if {
	handled
	command_kinds[request.kind]
	some p in programs
	dynamic(p)
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": ", lib.str(p.path), " is not an allowed location for programs under task type ", input.task.type])) if {
	handled
	command_kinds[request.kind]
	paths := cfg.paths
	some p in programs
	p.path
	not lib.glob_any(paths, [], p.path)
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", describe(p), " ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	command_kinds[request.kind]
	some p in programs
	not dynamic(p)
	e := program_effect(p)
	e != "allow"
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": ", lib.str(p.name), " run via ", lib.str(via), " ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	command_kinds[request.kind]
	vias := cfg.via
	some p in programs
	some via in p.via
	e := object.get(vias, via, object.get(vias, "*", "allow"))
	e != "allow"
}

verdicts contains lib.verdict(e, concat("", [lib.who, ": writing ", lib.str(r.target), " with a redirection ", lib.effect_words[e], " for task type ", input.task.type])) if {
	handled
	some r in object.get(request, "redirects", [])
	writes_file(r)
	e := object.get(cfg, "redirects", "deny")
	e != "allow"
}

verdicts contains lib.verdict("deny", concat("", [lib.who, ": forwarding to ", target, " is not allowed for task type ", input.task.type])) if {
	handled
	consts.forward_kinds[request.kind]
	allowed := cfg.forwards
	target := sprintf("%s:%d", [request.forward.host, request.forward.port])
	not lib.glob_any(allowed, [], target)
}

dynamic(p) if p.dynamic == true

dynamic(p) if dynamic_name(p.name)

dynamic_name(name) if name == ""

dynamic_name(name) if contains(name, "$")

dynamic_name(name) if contains(name, "`")

writes_file(r) if {
	write_redirects[r.op]
	not harmless_targets[r.target]
}

writes_file(r) if {
	r.op == ">&"
	not regex.match(`^([0-9]+|-)$`, r.target)
}

# The program's arguments: argv without argv[0] when argv[0] names the program.
args(p) := concat(" ", array.slice(p.argv, 1, count(p.argv))) if {
	argv0_names_program(p)
} else := concat(" ", object.get(p, "argv", []))

describe(p) := concat(" ", [p.name, a]) if {
	a := args(p)
	a != ""
} else := p.name

# A string effect applies to any arguments; a list of {args, effect} rules is
# matched against the arguments and the most restrictive matching rule wins.
program_effect(p) := e if {
	rule := program_rule(p.name)
	is_string(rule)
	e := rule
} else := e if {
	rule := program_rule(p.name)
	is_array(rule)
	a := args(p)
	e := lib.strongest({r.effect | some r in rule; args_match(r, a)})
} else := "deny"

program_rule(name) := r if {
	r := cfg.programs[name]
} else := cfg.programs["*"]

args_match(r, _) if not r.args

# Argument globs have no delimiters: `*` spans anything, dots included. (With
# glob.match's default delimiter ".", "*-exec*" did not match "find . -exec
# ..." and "status*" did not match "status nginx.service".)
args_match(r, a) if lib.glob_one(r.args, null, a)

argv0_names_program(p) if p.argv[0] == p.name

argv0_names_program(p) if p.argv[0] == p.path
