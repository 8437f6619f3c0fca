{{/*
The chart's alerts, one entry each: name, severity, for, expr, summary, description. The
PrometheusRule (aggregator-prometheusrule.yaml) adds the runbook_url and the labels of
aggregator.prometheusRule.defaultRules, and leaves out the disabled ones. docs/runbooks/<alert>.md
says what each means and what to do; test/alerts/ proves each with promtool and a live Prometheus.

Severities follow the kubernetes-mixin (its README, "Alert Severities"): critical pages someone
for instant action, warning goes to the work queue, info supports troubleshooting and is worth
neither a page nor a ticket on its own.

Restarts. The aggregator keeps its state in memory: after a restart its findings, readiness and
node counts come back with the agents' next reports (60 s heartbeat, plus their back-off while it
was away), CALICO_CONFIG_DRIFT after its 360 s grace, and the pod (so the pod and instance labels)
is a new one. So the alerts on that state read it through max_over_time(...[10m]), which bridges
both the scrape gap and the first minutes of the new pod, and aggregate by (namespace, job) only,
so the old and the new pod's series make one alert. Each such `for` is longer than the 10 m window,
so a finding that lasts a moment cannot fire through the window alone.
*/}}
{{- define "nodeprep.alerts" -}}
{{- $s := include "nodeprep.prometheusRule.selector" . -}}
{{- $own := "NODE_NO_AGENT|NODE_STALE" -}}
{{- $blocking := "MACHINE_ID_DUPLICATE|MACHINE_ID_INVALID|KUBELET_MACHINE_ID_STALE|ILLUMIO_ROOT_CA_MISSING|ILLUMIO_ROOT_CA_INVALID|ILLUMIO_ROOT_CA_INTERMEDIATE|ILLUMIO_PCE_TLS_UNTRUSTED|ILLUMIO_UNDERSIZED|CALICO_INSERT_MODE|CALICO_ILLUMIO_CONFLICT|CALICO_MODE_MIXED|CALICO_OUT_OF_SYNC|CALICO_CONFIG_NOT_APPEND|CALICO_CONFIG_DRIFT" -}}
# Not scraped (absent) or scraped and failing (up == 0: down, or refusing Prometheus's token).
# Neither branch holds during a normal restart for longer than one scrape.
- alert: NodeprepAggregatorDown
  severity: warning
  for: 10m
  expr: >-
    (max by (namespace, job) (up{ {{- $s -}} }) == 0) or absent(up{ {{- $s -}} })
  summary: {{ `The nodeprep aggregator is down or not scraped.` | quote }}
  description: {{ `Prometheus has had no successful scrape of the nodeprep aggregator (job {{ $labels.job }}, namespace {{ $labels.namespace }}) for 10 minutes: it is down, not found by the ServiceMonitor, or refusing Prometheus's token. Meanwhile no other nodeprep alert can fire.` | quote }}

- alert: NodeprepMachineIdDuplicate
  severity: critical
  for: 15m
  expr: >-
    max by (namespace, job) (max_over_time(nodeprep_findings_active{ {{- $s -}} ,code="MACHINE_ID_DUPLICATE"}[10m])) > 0
  summary: {{ `Nodes share a machine ID.` | quote }}
  description: {{ `{{ $value }} group(s) of nodes share one machine ID (aggregator {{ $labels.namespace }}/{{ $labels.job }}): they were cloned from one image. C-VEN and Kubelink tell nodes apart by it; GET /v1/nodes?code=MACHINE_ID_DUPLICATE lists them.` | quote }}

- alert: NodeprepCriticalFinding
  severity: critical
  for: 15m
  expr: >-
    max by (namespace, job, code) (max_over_time(nodeprep_findings_active{ {{- $s -}} ,severity="critical",code!="MACHINE_ID_DUPLICATE"}[10m])) > 0
  summary: {{ `A critical nodeprep finding is active.` | quote }}
  description: {{ `{{ $value }} finding(s) {{ $labels.code }} at severity critical (aggregator {{ $labels.namespace }}/{{ $labels.job }}). GET /v1/findings?code={{ $labels.code }} has the nodes, the evidence and the fix.` | quote }}

- alert: NodeprepClusterNotReady
  severity: warning
  for: 30m
  expr: >-
    max by (namespace, job, step) (max_over_time(nodeprep_readiness_step{ {{- $s -}} ,state="not-ready"}[10m])) == 1
  summary: {{ `The cluster is not ready for Illumio C-VEN.` | quote }}
  description: {{ `The step {{ $labels.step }} of Illumio's "Prepare Your Environment" guide is not ready (aggregator {{ $labels.namespace }}/{{ $labels.job }}). GET /v1/readiness says why and names the findings that decide it.` | quote }}

# Unknown for a while after every restart (no report yet): the hour lets that pass. With the
# cluster view off the root CA and sizing steps are always unknown, by design: not alerted.
- alert: NodeprepReadinessUnknown
  severity: info
  for: 1h
  expr: >-
    (max by (namespace, job, step) (max_over_time(nodeprep_readiness_step{ {{- $s -}} ,state="unknown"}[10m])) == 1) unless on (namespace, job) (max by (namespace, job) (nodeprep_cluster_view_state{ {{- $s -}} ,state="off"}) == 1)
  summary: {{ `nodeprep cannot tell whether a readiness step is met.` | quote }}
  description: {{ `The step {{ $labels.step }} has been unknown for an hour (aggregator {{ $labels.namespace }}/{{ $labels.job }}): nodes not reporting, a check that could not run, or a cluster beyond the sizing guide. GET /v1/readiness says which.` | quote }}

# Nodes without an agent (NODE_NO_AGENT) and stale nodes (NODE_STALE) are one alert: a restarted
# aggregator no longer knows that a silent node once reported, so after NODE_NO_AGENT's grace (the
# node TTL, counted from its start) a stale node is a node without an agent. Summed per aggregator
# pod first (the subquery), then bridged over 10 minutes like the rest. The grace also keeps a
# node that joined a moment ago out of it.
- alert: NodeprepNodesNotReporting
  severity: warning
  for: 30m
  expr: >-
    max by (namespace, job) (max_over_time(sum without (code, severity) (nodeprep_findings_active{ {{- $s -}} ,code=~"NODE_NO_AGENT|NODE_STALE"})[10m:1m])) > 0
  summary: {{ `Nodes of the cluster send no nodeprep reports.` | quote }}
  description: {{ `{{ $value }} node(s) send no reports (aggregator {{ $labels.namespace }}/{{ $labels.job }}): no agent runs there, it cannot reach the aggregator, or it stopped. Their machine ID and Calico mode are not checked. GET /v1/findings?code=NODE_NO_AGENT and ?code=NODE_STALE say which nodes and why.` | quote }}

# Down means no sample of 1 within 10 minutes; the few seconds of syncing after a restart do not.
- alert: NodeprepClusterViewDegraded
  severity: warning
  for: 5m
  expr: >-
    max by (namespace, job, resource) (max_over_time(nodeprep_cluster_view_resource_up{ {{- $s -}} }[10m])) == 0
  summary: {{ `The aggregator has lost its watch of a Kubernetes resource.` | quote }}
  description: {{ `The aggregator's watch of {{ $labels.resource }} has been lost or forbidden for 15 minutes (aggregator {{ $labels.namespace }}/{{ $labels.job }}): findings that depend on it (nodes without an agent, Calico's configuration, Illumio's parts, the root CA) may be missing or out of date.` | quote }}

# review_unavailable is the API server not answering a TokenReview (agents retry): not an agent's fault.
- alert: NodeprepReportsRefused
  severity: warning
  for: 15m
  expr: >-
    sum by (namespace, job, reason) (increase(nodeprep_reports_rejected_total{ {{- $s -}} ,reason!="review_unavailable"}[10m])) > 0
  summary: {{ `The aggregator keeps refusing agents' reports.` | quote }}
  description: {{ `The aggregator has refused reports for the reason {{ $labels.reason }} for 15 minutes, {{ $value | humanize }} in the last 10 (aggregator {{ $labels.namespace }}/{{ $labels.job }}): agents are misconfigured or not who they say, and their nodes are not checked. The aggregator's log says which, once per cause.` | quote }}

# Warnings that make a readiness step not-ready are NodeprepClusterNotReady's, and the node
# codes NodeprepNodesNotReporting's: one ticket per problem.
- alert: NodeprepWarningFinding
  severity: warning
  for: 1h
  expr: >-
    max by (namespace, job, code) (max_over_time(nodeprep_findings_active{ {{- $s -}} ,severity="warning",code!~"{{ $own }}|{{ $blocking }}"}[10m])) > 0
  summary: {{ `A nodeprep warning has been active for an hour.` | quote }}
  description: {{ `{{ $value }} finding(s) {{ $labels.code }} at severity warning for an hour (aggregator {{ $labels.namespace }}/{{ $labels.job }}). GET /v1/findings?code={{ $labels.code }} has the nodes, the evidence and the fix.` | quote }}
{{- end }}

{{/* The PromQL label matchers of this release's aggregator, as the chart's ServiceMonitor scrapes it. */}}
{{- define "nodeprep.prometheusRule.selector" -}}
{{- default (printf "job=%q,namespace=%q" (include "nodeprep.aggregator.fullname" .) .Release.Namespace) .Values.aggregator.prometheusRule.selector }}
{{- end }}
