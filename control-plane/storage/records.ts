/** The control plane's records as the API returns them (snake_case, RFC 3339 timestamps). */
import type { TaskRecord } from '../../core/tasks.ts';
import type { ReviewRequestSpec } from '../../core/reviews.ts';

export interface StoredTask extends TaskRecord {
  source: string;
  created_at: string;
  updated_at: string;
  ended_at?: string;
}

export type ReviewState = 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled';

export interface ApprovalRecord {
  approver: string;
  decision: 'approve' | 'deny';
  /** `once` = this exact command once; `grant` = time-boxed grant for the task on the resource. */
  kind: 'once' | 'grant';
  grant_s?: number;
  reason?: string;
  created_at: string;
}

/** A stored review request: the data path's request (minus its requirement, flattened below) plus its state. */
export interface ReviewRecord extends Omit<ReviewRequestSpec, 'requirement'> {
  id: string;
  approvers: string[];
  min_approvals: number;
  state: ReviewState;
  /** The service identity (sidecar) that filed the request. */
  requested_by: string;
  created_at: string;
  expires_at: string;
  decided_at?: string;
  decided_by: string[];
  decision_reason?: string;
  grant_until?: string;
  approvals: ApprovalRecord[];
}

export interface GrantRecord {
  id: string;
  review_id: string;
  task_id: string;
  subject: string;
  resource: string;
  granted_by: string[];
  created_at: string;
  until: string;
  revoked_at?: string;
}

export interface DeliveryRecord {
  id: string;
  target: string;
  event: string;
  payload: unknown;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  next_attempt_at: string;
  last_status?: number;
  last_error?: string;
  created_at: string;
  delivered_at?: string;
}
