{{/* Chart name, overridable. */}}
{{- define "nodeprep.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart>, or the release name when it already holds the chart name. */}}
{{- define "nodeprep.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "nodeprep.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Common labels. */}}
{{- define "nodeprep.labels" -}}
helm.sh/chart: {{ include "nodeprep.chart" . }}
{{ include "nodeprep.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nodeprep
{{- end }}

{{/* Selector labels; each component adds app.kubernetes.io/component. */}}
{{- define "nodeprep.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nodeprep.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "nodeprep.agent.fullname" -}}
{{- printf "%s-agent" (include "nodeprep.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{- define "nodeprep.aggregator.fullname" -}}
{{- printf "%s-aggregator" (include "nodeprep.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}

{{- define "nodeprep.agent.serviceAccountName" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (include "nodeprep.agent.fullname" .) .Values.agent.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "nodeprep.aggregator.serviceAccountName" -}}
{{- if .Values.aggregator.serviceAccount.create }}
{{- default (include "nodeprep.aggregator.fullname" .) .Values.aggregator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.aggregator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference. Call with (dict "image" .Values.<component>.image "root" $). */}}
{{- define "nodeprep.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) }}
{{- end }}
{{- end }}

{{/* The token Secret and its key, shared by agent and aggregator. */}}
{{- define "nodeprep.tokenSecretName" -}}
{{- default (printf "%s-token" (include "nodeprep.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{- define "nodeprep.tokenSecretKey" -}}
{{- if .Values.auth.existingSecret }}
{{- .Values.auth.existingSecretKey }}
{{- else }}
{{- print "token" }}
{{- end }}
{{- end }}

{{/* Where the token file is mounted in both pods; the key is projected to the file name "token". */}}
{{- define "nodeprep.tokenDir" -}}
/var/run/secrets/nodeprep
{{- end }}

{{/* Where the agents send reports. */}}
{{- define "nodeprep.aggregatorUrl" -}}
{{- if .Values.agent.aggregatorUrl }}
{{- .Values.agent.aggregatorUrl }}
{{- else }}
{{- printf "http://%s.%s.svc:%v" (include "nodeprep.aggregator.fullname" .) .Release.Namespace .Values.aggregator.service.port }}
{{- end }}
{{- end }}

{{/*
Checks that span several values, with messages that say what to set (the schema checks each
value on its own). Included once, from agent-daemonset.yaml.
*/}}
{{- define "nodeprep.validate" -}}
{{- if and (not .Values.agent.enabled) (not .Values.aggregator.enabled) }}
{{- fail "nodeprep: agent.enabled and aggregator.enabled are both false: nothing to install" }}
{{- end }}
{{- if and .Values.agent.enabled (not .Values.aggregator.enabled) (not .Values.agent.aggregatorUrl) }}
{{- fail "nodeprep: aggregator.enabled=false needs agent.aggregatorUrl (the aggregator the agents report to, e.g. https://nodeprep.example.com)" }}
{{- end }}
{{- if and (not .Values.aggregator.enabled) (not .Values.auth.existingSecret) }}
{{- fail "nodeprep: aggregator.enabled=false needs auth.existingSecret: a Secret in this namespace holding the token of the aggregator the agents report to" }}
{{- end }}
{{- if and .Values.aggregator.enabled .Values.aggregator.networkPolicy.enabled (not .Values.aggregator.networkPolicy.agentCIDRs) }}
{{- fail "nodeprep: aggregator.networkPolicy.enabled needs aggregator.networkPolicy.agentCIDRs (the node CIDRs): agents use hostNetwork, so no podSelector can let them in" }}
{{- end }}
{{- end }}
