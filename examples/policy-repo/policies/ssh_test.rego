# Unit tests of the SSH rules.
package taskgate_test

import data.taskgate

ssh_req(type, request) := replace(base, {
	"task": object.union(base.task, {"type": type}),
	"resource": {"protocol": "ssh", "name": "web-1", "labels": {}},
	"request": object.union({"kind": "exec", "command": "", "argv": [], "programs": []}, request),
})

prog(argv, via) := {"name": argv[0], "argv": argv, "via": [via]}

ssh_cases := [
	["read-only", {"programs": [prog(["cat", "/var/log/syslog"], "top")]}, "allow", "allows"],
	["read-only", {"programs": [prog(["rm", "-rf", "/"], "top")]}, "deny", "rm -rf / is not allowed"],
	["read-only", {"programs": [prog(["systemctl", "status", "nginx"], "top")]}, "allow", "allows"],
	["read-only", {"programs": [prog(["systemctl", "stop", "nginx"], "top")]}, "deny", "systemctl stop nginx is not allowed"],
	["read-only", {"programs": [prog(["find", "/", "-delete"], "top")]}, "deny", "find / -delete is not allowed"],
	["read-only", {"programs": [{"name": "ls", "argv": [], "via": ["top"]}]}, "allow", "allows"],
	["read-only", {"programs": [{"name": "ls", "argv": ["-la"], "via": ["top"]}]}, "allow", "allows"],
	["read-only", {"programs": []}, "deny", "runs no program"],
	["read-only", {"programs": [prog(["$X"], "top")]}, "deny", "computed at run time"],
	["read-only", {"programs": [prog(["`id`"], "top")]}, "deny", "computed at run time"],
	["read-only", {"programs": [{"name": "", "argv": [], "via": ["top"]}]}, "deny", "computed at run time"],
	["read-only", {"programs": [{"name": "ca\"\"t", "argv": [], "via": ["top"], "dynamic": true}]}, "deny", "computed at run time"],
	["read-only", {"programs": [{"name": "cat", "path": "/home/x/cat", "argv": ["/home/x/cat"], "via": ["top"]}]}, "deny", "not an allowed location"],
	["read-only", {"programs": [prog(["cat", "x"], "top")], "redirects": [{"op": ">>", "target": "/etc/passwd"}]}, "deny", "writing /etc/passwd"],
	["read-only", {"programs": [prog(["cat", "x"], "top")], "redirects": [{"op": ">&", "target": "/tmp/out"}]}, "deny", "writing /tmp/out"],
	["read-only", {"programs": [prog(["cat", "x"], "top")], "redirects": [{"op": ">&", "target": "2"}, {"op": "<", "target": "/etc/hosts"}]}, "allow", "allows"],
	["read-only", {"unparseable": true, "parse_error": "bad"}, "deny", "could not be parsed (bad)"],
	["read-only", {"kind": "x11"}, "deny", "SSH x11 is not allowed"],
	["incident-debug", {"programs": [prog(["sudo", "systemctl", "restart", "x"], "top"), prog(["systemctl", "restart", "x"], "sudo")]}, "review", "run via sudo needs review"],
	["incident-debug", {"programs": [prog(["top", "-bn1"], "top")]}, "allow", "allows"],
	["incident-debug", {"programs": [prog(["top"], "top")]}, "deny", "top is not allowed"],
	["deploy", {"programs": [prog(["journalctl", "-u", "app"], "top")]}, "allow", "allows"],
	["break-glass", {"programs": [prog(["vim", "/etc/hosts"], "top")]}, "review", "vim /etc/hosts needs review"],
	["break-glass", {"programs": [prog(["cat", "x"], "top")], "redirects": [{"op": ">", "target": "/etc/x"}]}, "review", "writing /etc/x with a redirection needs review"],
	["schema-migration", {"programs": [prog(["ls"], "top")]}, "deny", "grants no SSH access"],
]

test_ssh_rules if {
	every c in ssh_cases {
		d := decide(ssh_req(c[0], c[1]))
		d.result == c[2]
		reason_has(d, c[3])
	}
}

fwd_catalog := {"tunnel": {"description": "x", "ssh": {"kinds": {"port_forward": "allow"}, "forwards": ["localhost:5432", "db-*.internal:5432"]}}}

test_ssh_forwards if {
	ok := ssh_req("tunnel", {"kind": "port_forward", "forward": {"host": "db-1.internal", "port": 5432}})
	d1 := taskgate.decision with input as ok with time.now_ns as june with data.task_types as fwd_catalog
	d1.result == "allow"
	bad := ssh_req("tunnel", {"kind": "port_forward", "forward": {"host": "db-1.internal", "port": 22}})
	d2 := taskgate.decision with input as bad with time.now_ns as june with data.task_types as fwd_catalog
	reason_has(d2, "forwarding to db-1.internal:22 is not allowed")
}
