# Unit tests of the decision assembly, task checks and review flow.
package taskgate_test

import data.taskgate

base := {
	"version": 1,
	"identity": {"subject": "alice@example.com", "groups": ["dev"], "issuer": "https://idp", "type": "user"},
	"task": {
		"id": "OPS-1", "type": "read-only", "assignee": "alice@example.com", "reviewer": "bob@example.com",
		"reviewers": ["bob@example.com"], "state": "open", "expires_at": "2026-12-01T00:00:00Z",
	},
	"resource": {"protocol": "postgres", "name": "db", "labels": {}},
	"request": {"message": "query", "statements": [select_orders]},
	"review": {"status": "none", "by": []},
	"session": {"id": "s", "started_at": "2026-06-01T00:00:00Z"},
}

select_orders := {"command": "SELECT", "class": "read", "tables": [{"schema": "public", "name": "orders", "access": "read"}], "functions": [], "flags": [], "text": "SELECT"}

update_orders := {"command": "UPDATE", "class": "write", "tables": [{"schema": "public", "name": "orders", "access": "write"}], "functions": [], "flags": [], "has_where": true, "text": "UPDATE"}

# 2026-06-01T00:00:00Z
june := 1780272000000000000

# Replaces whole top-level blocks (object.union would merge them key by key).
with_patch(patch) := object.union(object.remove(base, object.keys(patch)), patch)

replace(doc, patch) := object.union(object.remove(doc, object.keys(patch)), patch)

decide(inp) := d if {
	d := taskgate.decision with input as inp with time.now_ns as june
}

reason_has(d, s) if {
	some r in d.reasons
	contains(r, s)
}

test_allow_select if {
	d := decide(base)
	d.result == "allow"
	d.obligations.max_rows == 10000
	count(d.mask) > 0
}

test_default_deny_without_input if {
	d := taskgate.decision with input as {} with time.now_ns as june
	d.result == "deny"
	reason_has(d, "names no task")
}

test_unknown_task if {
	d := decide(with_patch({"task": {"id": "OPS-9"}}))
	reason_has(d, "task OPS-9 is unknown")
}

test_unknown_type if {
	d := decide(with_patch({"task": object.union(base.task, {"type": "nope"})}))
	reason_has(d, "unknown task type")
}

test_closed_and_missing_state if {
	reason_has(decide(with_patch({"task": object.union(base.task, {"state": "closed"})})), "is closed")
	reason_has(decide(with_patch({"task": object.remove(base.task, ["state"])})), "is missing")
}

test_no_expiry if {
	reason_has(decide(with_patch({"task": object.remove(base.task, ["expires_at"])})), "no expiry")
}

test_expired if {
	d := taskgate.decision with input as base with time.now_ns as 1796083200000000000
	reason_has(d, "expired at 2026-12-01T00:00:00Z")
}

test_not_assignee if {
	reason_has(decide(with_patch({"identity": object.union(base.identity, {"subject": "eve"})})), "eve is not the assignee")
}

test_service_acting_for if {
	id := {"subject": "bot", "groups": [], "issuer": "i", "type": "service", "acting_for": "alice@example.com"}
	decide(with_patch({"identity": id})).result == "allow"
}

test_empty_assignee_never_matches if {
	d := decide(with_patch({"identity": object.union(base.identity, {"subject": ""}), "task": object.union(base.task, {"assignee": ""})}))
	d.result == "deny"
}

test_unknown_protocol if {
	reason_has(decide(with_patch({"resource": {"protocol": "ftp", "name": "x", "labels": {}}})), "is not one of postgres, ssh, http")
}

test_missing_request if {
	reason_has(decide(object.remove(base, ["request"])), "malformed postgres request")
	reason_has(decide(with_patch({"request": {"statements": "DROP TABLE x"}})), "request.statements must be a list")
}

test_review_requested if {
	d := decide(with_patch({"task": object.union(base.task, {"type": "data-fix"}), "request": {"message": "query", "statements": [update_orders]}}))
	d.result == "review"
	d.review == {"approvers": ["bob@example.com", "group:dba"], "min_approvals": 1, "timeout_s": 900}
}

dfix := with_patch({"task": object.union(base.task, {"type": "data-fix"}), "request": {"message": "query", "statements": [update_orders]}})

test_review_approved if {
	d := decide(replace(dfix, {"review": {"status": "approved", "request_id": "R1", "by": ["bob@example.com"]}}))
	d.result == "allow"
	reason_has(d, "approved by bob@example.com (review R1)")
}

test_review_self_approval if {
	d := decide(replace(dfix, {"review": {"status": "approved", "request_id": "R1", "by": ["alice@example.com"]}}))
	d.result == "deny"
}

test_review_denied if {
	reason_has(decide(replace(dfix, {"review": {"status": "denied", "request_id": "R2", "by": []}})), "review R2 was denied")
}

test_reviewer_fallback_single if {
	t := object.remove(object.union(dfix.task, {"reviewer": "carol@example.com"}), ["reviewers"])
	d := decide(replace(dfix, {"task": t}))
	"carol@example.com" in d.review.approvers
}

test_no_reviewers_at_all if {
	t := object.remove(dfix.task, ["reviewers", "reviewer"])
	d := decide(replace(dfix, {"task": t}))
	d.review.approvers == ["group:dba"]
}

# A catalog whose only approvers are the task's reviewers: without them nobody can approve.
closed_catalog := {"solo": {
	"description": "x",
	"review": {"approvers": ["$reviewers"], "min_approvals": 1},
	"postgres": {"commands": {"UPDATE": "review"}, "tables": {"write": ["*.*"]}},
}}

test_nobody_can_approve if {
	t := object.union(base.task, {"type": "solo", "reviewers": ["alice@example.com"]})
	d := taskgate.decision with input as replace(dfix, {"task": t}) with time.now_ns as june with data.task_types as closed_catalog
	d.result == "deny"
	reason_has(d, "no one but the requester could approve")
}

test_named_approvers_only_count_when_listed if {
	t := object.union(base.task, {"type": "solo", "reviewers": ["bob@example.com"]})
	inp := replace(dfix, {"task": t, "review": {"status": "approved", "request_id": "R", "by": ["mallory@example.com"]}})
	d := taskgate.decision with input as inp with time.now_ns as june with data.task_types as closed_catalog
	d.result == "deny"
	in2 := object.union(inp, {"review": {"status": "approved", "request_id": "R", "by": ["bob@example.com"]}})
	d2 := taskgate.decision with input as in2 with time.now_ns as june with data.task_types as closed_catalog
	d2.result == "allow"
}

test_malformed_parts_are_denied if {
	reason_has(decide(with_patch({"request": {"message": "query", "statements": [{"command": "DROP TABLE"}]}})), "statement 1 is malformed")
	reason_has(decide(with_patch({"request": {"message": "query", "statements": [{"command": "SELECT", "class": "read", "tables": [{"name": "x"}]}]}})), "statement 1 is malformed")
	ssh := with_patch({"resource": {"protocol": "ssh", "name": "h", "labels": {}}, "request": {"kind": "exec", "programs": [{"argv": ["rm"]}]}})
	reason_has(decide(ssh), "program 1 is malformed")
	k := {"verb": "delete", "resource": "pods", "namespace": "shop", "name": "x"}
	http := with_patch({"resource": {"protocol": "http", "name": "h", "labels": {}}, "request": {"method": "DELETE", "path": "/x", "kubernetes": k}})
	reason_has(decide(http), "malformed kubernetes request")
}
