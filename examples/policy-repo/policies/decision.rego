# The decision: taskgate/decision. Default deny; task checks first, then the
# protocol rules' verdicts (deny > review > allow), then the review outcome.
# Contract: core/policy-contract.ts, documented in docs/policy-input.md.
package taskgate

import data.taskgate.http
import data.taskgate.lib
import data.taskgate.postgres
import data.taskgate.ssh
import data.taskgate.task

default decision := {"result": "deny", "reasons": ["no rule allows this request"], "mask": [], "obligations": {}}

decision := lib.deny_decision([task.problem]) if {
	task.problem
} else := lib.deny_decision([protocol_problem]) if {
	protocol_problem
} else := lib.deny_decision(sort(denials)) if {
	count(denials) > 0
} else := review_outcome if {
	count(reviews) > 0
} else := allowed if {
	handled
}

protocol_problem := concat("", ["resource protocol \"", lib.str(protocol), "\" is not one of postgres, ssh, http"]) if {
	protocol := object.get(object.get(input, "resource", {}), "protocol", "(none)")
	not request_shapes[protocol]
} else := concat("", ["malformed ", input.resource.protocol, " request: ", shape]) if {
	not well_formed
	shape := request_shapes[input.resource.protocol]
}

# protocol -> what a well-formed request carries
request_shapes := lib.consts.request_shapes

well_formed if {
	input.resource.protocol == "postgres"
	is_array(input.request.statements)
}

well_formed if {
	input.resource.protocol == "ssh"
	is_string(input.request.kind)
}

well_formed if {
	input.resource.protocol == "http"
	is_string(input.request.method)
	is_string(input.request.path)
}

# Only the request's protocol's rules are evaluated (the others would each
# check `handled` and fail, at a cost on every request).
verdicts := postgres.verdicts if {
	input.resource.protocol == "postgres"
} else := ssh.verdicts if {
	input.resource.protocol == "ssh"
} else := http.verdicts if {
	input.resource.protocol == "http"
} else := set()

denials := {v.reason | some v in verdicts; v.effect == "deny"}

reviews := {v.reason | some v in verdicts; v.effect == "review"}

handled if {
	input.resource.protocol == "postgres"
	postgres.handled
}

handled if {
	input.resource.protocol == "ssh"
	ssh.handled
}

handled if {
	input.resource.protocol == "http"
	http.handled
}

mask := object.get(lib.task_type, "mask", [])

obligations := object.get(lib.task_type, "obligations", {})

allowed := {
	"result": "allow",
	"reasons": [concat("", ["task ", input.task.id, " (", input.task.type, ") allows this request"])],
	"mask": mask,
	"obligations": obligations,
}

# ---- review ------------------------------------------------------------------

review_cfg := lib.task_type.review

review_status := object.get(object.get(input, "review", {}), "status", "none")

# The catalog's approvers with "$reviewers" expanded to the task's reviewers;
# the requester never approves their own request.
approver_set contains a if {
	some entry in review_cfg.approvers
	entry == "$reviewers"
	some a in task_reviewers
	a != ""
	not task.requesters[a]
}

approver_set contains entry if {
	some entry in review_cfg.approvers
	entry != "$reviewers"
}

task_reviewers := input.task.reviewers if is_array(input.task.reviewers)

else := [input.task.reviewer] if is_string(input.task.reviewer)

else := []

requirement := {
	"approvers": [a | some a in approver_set],
	"min_approvals": object.get(review_cfg, "min_approvals", 1),
	"timeout_s": object.get(review_cfg, "timeout_s", 900),
}

# Distinct approvers that count: not the requester, and named in the
# requirement (group membership is checked by the review service).
approvals := {a |
	some a in input.review.by
	not task.requesters[a]
	approver_counts(a)
}

approver_counts(_) if {
	some entry in approver_set
	startswith(entry, "group:")
}

approver_counts(a) if approver_set[a]

review_id := lib.str(object.get(input.review, "request_id", "(no id)"))

review_outcome := lib.deny_decision(array.concat(sort(reviews), [concat("", ["review ", review_id, " was ", lib.str(review_status)])])) if {
	lib.consts.review_closed[review_status]
} else := approved if {
	review_status == "approved"
	count(approvals) >= requirement.min_approvals
} else := lib.deny_decision(array.concat(sort(reviews), [concat("", [
	"review approved by ", lib.str(count(approvals)), " distinct eligible approver(s) (",
	concat(", ", sort(approvals)), "); ", lib.str(requirement.min_approvals), " required",
])])) if {
	review_status == "approved"
} else := lib.deny_decision(array.concat(sort(reviews), [concat("", [lib.who, ": no one but the requester could approve this review"])])) if {
	count(approver_set) == 0
} else := {
	"result": "review",
	"reasons": sort(reviews),
	"review": requirement,
	"mask": mask,
	"obligations": obligations,
}

approved := {
	"result": "allow",
	"reasons": array.concat(sort(reviews), [concat("", ["approved by ", concat(", ", sort(approvals)), " (review ", review_id, ")"])]),
	"mask": mask,
	"obligations": obligations,
}
