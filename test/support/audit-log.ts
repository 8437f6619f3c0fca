// What the API server itself says it was asked: kube-apiserver's audit log (one JSON event per
// line, every request at level Metadata), so that a test counts the lists and watches a client
// made, and reads the resourceVersion each watch asked for, from the server's side.
// https://kubernetes.io/docs/tasks/debug/debug-cluster/audit/
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface AuditEvent {
  stage: 'ResponseStarted' | 'ResponseComplete' | 'Panic';
  verb: string;
  requestURI: string;
  user: { username: string };
  responseStatus?: { code?: number };
  requestReceivedTimestamp: string;
  stageTimestamp: string;
}

/** A request as the server saw it: path and query apart, with when it came and ended. */
export interface AuditedRequest {
  verb: string;
  path: string;
  query: URLSearchParams;
  user: string;
  receivedAt: number;
  // When the answer was complete (a watch: when it ended); undefined while a watch is open.
  completedAt?: number;
  code?: number;
}

export class AuditLog {
  readonly file: string;
  private readonly policy: string;

  constructor(dir: string, name = 'audit') {
    this.file = path.join(dir, `${name}.log`);
    this.policy = path.join(dir, `${name}-policy.yaml`);
    // RequestReceived is left out: every request then has one event when it is answered, and a
    // watch a second when it ends.
    writeFileSync(this.policy, ['apiVersion: audit.k8s.io/v1', 'kind: Policy', 'omitStages: ["RequestReceived"]', 'rules:', '- level: Metadata', ''].join('\n'));
  }

  /** kube-apiserver flags that write this log. */
  get flags(): string[] {
    return [`--audit-policy-file=${this.policy}`, `--audit-log-path=${this.file}`, '--audit-log-format=json', '--audit-log-mode=blocking'];
  }

  /** Every request so far, once each, in the order they came. */
  requests(): AuditedRequest[] {
    if (!existsSync(this.file)) return [];
    const byId = new Map<string, AuditedRequest>();
    for (const line of readFileSync(this.file, 'utf8').split('\n')) {
      if (line === '') continue;
      const event = JSON.parse(line) as AuditEvent & { auditID: string };
      const url = new URL(event.requestURI, 'https://server');
      const seen = byId.get(event.auditID) ?? {
        verb: event.verb,
        path: url.pathname,
        query: url.searchParams,
        user: event.user.username,
        receivedAt: Date.parse(event.requestReceivedTimestamp),
      };
      if (event.stage !== 'ResponseStarted') seen.completedAt = Date.parse(event.stageTimestamp);
      if (event.responseStatus?.code !== undefined) seen.code = event.responseStatus.code;
      byId.set(event.auditID, seen);
    }
    return [...byId.values()].sort((a, b) => a.receivedAt - b.receivedAt);
  }
}
