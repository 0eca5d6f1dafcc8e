# Checks common to every protocol: the task exists, is open and unexpired, has
# a known task type, and the caller is its assignee. `problem` is the first
# failing check (undefined when the task grants access in principle).
package taskgate.task

import data.taskgate.lib

task := object.get(input, "task", {})

identity := object.get(input, "identity", {})

problem := "the request names no task (connect with a task id)" if {
	object.get(task, "id", "") == ""
} else := concat("", ["task ", id, " is unknown: no such task in the registry"]) if {
	object.get(task, "type", "") == ""
} else := concat("", ["task ", id, " has unknown task type \"", lib.str(task.type), "\" (not in the task-type catalog)"]) if {
	not lib.task_type
} else := concat("", ["task ", id, " is ", lib.str(state), ": only open tasks grant access"]) if {
	state := object.get(task, "state", "missing")
	state != "open"
} else := concat("", ["task ", id, " has no expiry time: refusing an unbounded task"]) if {
	object.get(task, "expires_at", "") == ""
} else := concat("", ["task ", id, " expired at ", lib.str(task.expires_at)]) if {
	time.now_ns() >= time.parse_rfc3339_ns(task.expires_at)
} else := concat("", [lib.str(caller), " is not the assignee of task ", id, " (assigned to ", lib.str(assignee), ")"]) if {
	not assignee_match
	caller := object.get(identity, "subject", "(no identity)")
	assignee := object.get(task, "assignee", "nobody")
}

id := lib.str(task.id)

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
