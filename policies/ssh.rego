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

# Kinds whose command line is made of programs.
command_kinds := {"exec", "shell_line"}

programs := object.get(request, "programs", [])

# Output redirections that write a file.
write_redirects := {">", ">>", ">|", "&>", "&>>", "<>"}

harmless_targets := {"/dev/null", "/dev/stdout", "/dev/stderr"}

verdicts contains lib.verdict("deny", sprintf("%s grants no SSH access", [lib.who])) if {
	active
	lib.task_type
	not cfg
}

verdicts contains lib.verdict(e, sprintf("%s: SSH %s %s for task type %s", [lib.who, kind, lib.effect_words[e], input.task.type])) if {
	handled
	kind := object.get(request, "kind", "unknown")
	e := lib.lookup(object.get(cfg, "kinds", {}), kind)
	e != "allow"
}

verdicts contains lib.verdict("deny", sprintf("%s: the command could not be parsed (%s); unparseable commands are always denied", [lib.who, object.get(request, "parse_error", "parse error")])) if {
	handled
	request.unparseable == true
}

verdicts contains lib.verdict("deny", sprintf("%s: the command runs no program taskgate can identify", [lib.who])) if {
	handled
	command_kinds[request.kind]
	not request.unparseable == true
	count(programs) == 0
}

verdicts contains lib.verdict("deny", sprintf("%s: program %d is malformed (name and argv are required)", [lib.who, i + 1])) if {
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
verdicts contains lib.verdict("deny", sprintf("%s: program name \"%s\" is computed at run time and cannot be checked", [lib.who, p.name])) if {
	handled
	command_kinds[request.kind]
	some p in programs
	dynamic(p)
}

verdicts contains lib.verdict("deny", sprintf("%s: %s is not an allowed location for programs under task type %s", [lib.who, p.path, input.task.type])) if {
	handled
	command_kinds[request.kind]
	paths := cfg.paths
	some p in programs
	p.path
	not lib.glob_any(paths, [], p.path)
}

verdicts contains lib.verdict(e, sprintf("%s: %s %s for task type %s", [lib.who, describe(p), lib.effect_words[e], input.task.type])) if {
	handled
	command_kinds[request.kind]
	some p in programs
	not dynamic(p)
	e := program_effect(p)
	e != "allow"
}

verdicts contains lib.verdict(e, sprintf("%s: %s run via %s %s for task type %s", [lib.who, p.name, via, lib.effect_words[e], input.task.type])) if {
	handled
	command_kinds[request.kind]
	vias := cfg.via
	some p in programs
	some via in p.via
	e := object.get(vias, via, object.get(vias, "*", "allow"))
	e != "allow"
}

verdicts contains lib.verdict(e, sprintf("%s: writing %s with a redirection %s for task type %s", [lib.who, r.target, lib.effect_words[e], input.task.type])) if {
	handled
	some r in object.get(request, "redirects", [])
	writes_file(r)
	e := object.get(cfg, "redirects", "deny")
	e != "allow"
}

verdicts contains lib.verdict("deny", sprintf("%s: forwarding to %s is not allowed for task type %s", [lib.who, target, input.task.type])) if {
	handled
	request.kind in {"port_forward", "remote_forward"}
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
	p.argv[0] in {p.name, object.get(p, "path", p.name)}
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

args_match(r, a) if glob.match(r.args, [], a)
