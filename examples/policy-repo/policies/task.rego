# Checks common to every protocol: the task exists, is open and unexpired, has
# a known task type, and the caller is its assignee. `problem` is the first
# failing check (undefined when the task grants access in principle).
package taskgate.task

import data.taskgate.lib

task := object.get(input, "task", {})

identity := object.get(input, "identity", {})

problem := "the request names no task (connect with a task id)" if {
	object.get(task, "id", "") == ""
} else := sprintf("task %s is unknown: no such task in the registry", [task.id]) if {
	object.get(task, "type", "") == ""
} else := sprintf("task %s has unknown task type \"%s\" (not in the task-type catalog)", [task.id, task.type]) if {
	not lib.task_type
} else := sprintf("task %s is %s: only open tasks grant access", [task.id, state]) if {
	state := object.get(task, "state", "missing")
	state != "open"
} else := sprintf("task %s has no expiry time: refusing an unbounded task", [task.id]) if {
	object.get(task, "expires_at", "") == ""
} else := sprintf("task %s expired at %s", [task.id, task.expires_at]) if {
	time.now_ns() >= time.parse_rfc3339_ns(task.expires_at)
} else := sprintf("%s is not the assignee of task %s (assigned to %s)", [caller, task.id, assignee]) if {
	not assignee_match
	caller := object.get(identity, "subject", "(no identity)")
	assignee := object.get(task, "assignee", "nobody")
}

assignee_match if {
	task.assignee != ""
	identity.subject == task.assignee
}

assignee_match if {
	task.assignee != ""
	identity.type == "service"
	identity.acting_for == task.assignee
}

# Who asked: never an approver of their own request.
requesters contains identity.subject

requesters contains identity.acting_for
