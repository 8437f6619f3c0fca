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


{{/*
How this release's agents prove who they are to the aggregator (empty when there are no agents):
  serviceAccount  their own ServiceAccount token, projected with audience nodeprep; the
                  aggregator checks it with a TokenReview (needs the cluster view).
  secret          a shared token from auth.existingSecret: agents that report to another
                  aggregator (agent.aggregatorUrl), whose API server cannot review our tokens.
  generated       a shared token the chart generates (<fullname>-token): agents of this release
                  when the aggregator has no Kubernetes API (aggregator.clusterView.enabled=false).
*/}}
{{- define "nodeprep.agent.auth" -}}
{{- if .Values.agent.enabled }}
{{- if or .Values.auth.existingSecret .Values.agent.aggregatorUrl }}
{{- print "secret" }}
{{- else if .Values.aggregator.clusterView.enabled }}
{{- print "serviceAccount" }}
{{- else }}
{{- print "generated" }}
{{- end }}
{{- end }}
{{- end }}

{{/* The audience of the agents' projected tokens; the aggregator's TokenReview asks for it. */}}
{{- define "nodeprep.agent.tokenAudience" -}}
nodeprep
{{- end }}

{{/* Where the agent's token (projected or shared) and the aggregator's token file are mounted. */}}
{{- define "nodeprep.tokenDir" -}}
/var/run/secrets/nodeprep
{{- end }}

{{/* The generated shared token Secret (only with aggregator.clusterView.enabled=false). */}}
{{- define "nodeprep.generatedTokenSecretName" -}}
{{- printf "%s-token" (include "nodeprep.fullname" . | trunc 57 | trimSuffix "-") }}
{{- end }}

{{/* "true" when the aggregator reads the Kubernetes API (and so gets the RBAC). */}}
{{- define "nodeprep.aggregator.clusterView" -}}
{{- if and .Values.aggregator.enabled .Values.aggregator.clusterView.enabled }}true{{ end }}
{{- end }}

{{/* The aggregator's token file for shared tokens (AUTH_TOKEN_FILE): Secret and key, or nothing. */}}
{{- define "nodeprep.aggregator.sharedTokensSecret" -}}
{{- if .Values.auth.sharedTokens.existingSecret }}
{{- .Values.auth.sharedTokens.existingSecret }}
{{- else if eq (include "nodeprep.agent.auth" .) "generated" }}
{{- include "nodeprep.generatedTokenSecretName" . }}
{{- end }}
{{- end }}

{{- define "nodeprep.aggregator.sharedTokensKey" -}}
{{- if .Values.auth.sharedTokens.existingSecret }}
{{- .Values.auth.sharedTokens.key }}
{{- else }}
{{- print "tokens" }}
{{- end }}
{{- end }}

{{/* The Secret with the aggregator's serving certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "nodeprep.aggregator.tlsSecretName" -}}
{{- default (printf "%s-aggregator-tls" (include "nodeprep.fullname" . | trunc 48 | trimSuffix "-")) .Values.aggregator.tls.existingSecret }}
{{- end }}

{{/* The names the aggregator's certificate is valid for, comma-separated, most specific last. */}}
{{- define "nodeprep.aggregator.dnsNames" -}}
{{- $svc := include "nodeprep.aggregator.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- join "," (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns (trimSuffix "." .Values.aggregator.tls.clusterDomain))) }}
{{- end }}

{{/* The aggregator's port name: https with TLS, http without. */}}
{{- define "nodeprep.aggregator.portName" -}}
{{- if .Values.aggregator.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* Where the agents send reports. */}}
{{- define "nodeprep.aggregatorUrl" -}}
{{- if .Values.agent.aggregatorUrl }}
{{- .Values.agent.aggregatorUrl }}
{{- else }}
{{- printf "%s://%s.%s.svc:%v" (include "nodeprep.aggregator.portName" .) (include "nodeprep.aggregator.fullname" .) .Release.Namespace .Values.aggregator.service.port }}
{{- end }}
{{- end }}

{{/*
The CA the agents trust, as "configMap" (agent.aggregatorCA, for an aggregator elsewhere),
"tlsSecret" (this release's aggregator: only ca.crt of its TLS Secret) or nothing.
*/}}
{{- define "nodeprep.agent.caSource" -}}
{{- if .Values.agent.aggregatorCA.configMapName }}
{{- print "configMap" }}
{{- else if and (not .Values.agent.aggregatorUrl) .Values.aggregator.enabled .Values.aggregator.tls.enabled }}
{{- print "tlsSecret" }}
{{- end }}
{{- end }}

{{/* Where the aggregator publishes (aggregator.publish): "true" when it does, which needs the cluster view's API access. */}}
{{- define "nodeprep.publish.report" -}}
{{- if and (include "nodeprep.aggregator.clusterView" .) .Values.aggregator.publish.report.enabled }}true{{ end }}
{{- end }}

{{- define "nodeprep.publish.events" -}}
{{- if and (include "nodeprep.aggregator.clusterView" .) .Values.aggregator.publish.events.enabled }}true{{ end }}
{{- end }}

{{- define "nodeprep.publish.valuesConfigMap" -}}
{{- if and (include "nodeprep.aggregator.clusterView" .) .Values.aggregator.publish.valuesConfigMap.enabled }}true{{ end }}
{{- end }}

{{/* The ConfigMap with the Illumio values (VALUES_CONFIGMAP): <fullname>-illumio-values. */}}
{{- define "nodeprep.valuesConfigMapName" -}}
{{- printf "%s-illumio-values" (include "nodeprep.fullname" . | trunc 48 | trimSuffix "-") }}
{{- end }}

{{/* Names the aggregator may read among ConfigMaps: the Illumio root CA and Calico's. */}}
{{- define "nodeprep.aggregator.configMapNames" -}}
{{- $names := list .Values.illumio.rootCaConfigMap.name }}
{{- range .Values.aggregator.clusterView.calicoConfigMaps }}
{{- $names = append $names . }}
{{- end }}
{{- join "," ($names | uniq) }}
{{- end }}

{{/* recursiveReadOnly needs Kubernetes 1.30 (earlier API servers reject the field). */}}
{{- define "nodeprep.agent.recursiveReadOnly" -}}
{{- $rro := .Values.agent.hostMounts.recursiveReadOnly }}
{{- if and $rro (ne $rro "Disabled") (semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version) }}
{{- $rro }}
{{- end }}
{{- end }}

{{/*
Checks that span several values, with messages that say what to set (the schema checks each
value on its own). Included once, from validate.yaml.
*/}}
{{- define "nodeprep.validate" -}}
{{- $agentAuth := include "nodeprep.agent.auth" . }}
{{- if and (not .Values.agent.enabled) (not .Values.aggregator.enabled) }}
{{- fail "nodeprep: agent.enabled and aggregator.enabled are both false: nothing to install" }}
{{- end }}
{{- if and .Values.agent.enabled (not .Values.aggregator.enabled) (not .Values.agent.aggregatorUrl) }}
{{- fail "nodeprep: aggregator.enabled=false needs agent.aggregatorUrl (the aggregator the agents report to, e.g. https://nodeprep.example.com)" }}
{{- end }}
{{- if and .Values.agent.enabled .Values.agent.aggregatorUrl (not .Values.clusterName) }}
{{- fail "nodeprep: agent.aggregatorUrl needs clusterName: an aggregator that hears from several clusters keys nodes by cluster, and its shared token is bound to one cluster name (a DNS-1123 label such as edge-eu-1)" }}
{{- end }}
{{- if and .Values.agent.enabled .Values.agent.aggregatorUrl (not .Values.auth.existingSecret) }}
{{- fail "nodeprep: agent.aggregatorUrl needs auth.existingSecret: a Secret in this namespace holding the shared token the remote aggregator expects for this cluster (the other cluster's API server cannot check this cluster's ServiceAccount tokens)" }}
{{- end }}
{{- if and .Values.agent.enabled .Values.aggregator.enabled (not .Values.agent.aggregatorUrl) .Values.auth.existingSecret (not .Values.auth.sharedTokens.existingSecret) }}
{{- fail "nodeprep: auth.existingSecret is only for agents that report to another aggregator (agent.aggregatorUrl). This release's agents authenticate with their own ServiceAccount tokens: remove auth.existingSecret. (To keep a shared token for them, also set auth.sharedTokens.existingSecret, whose file lists \"<token> <cluster>\" lines, including theirs.)" }}
{{- end }}
{{- if and .Values.aggregator.enabled (eq $agentAuth "generated") .Values.auth.sharedTokens.existingSecret }}
{{- fail "nodeprep: aggregator.clusterView.enabled=false with auth.sharedTokens.existingSecret: the aggregator reads one token file, so the chart cannot add a generated token for this release's agents. Set auth.existingSecret to a Secret with their token and put its \"<token> <clusterName>\" line in the auth.sharedTokens Secret." }}
{{- end }}
{{- if and .Values.aggregator.enabled (eq $agentAuth "generated") (not .Values.clusterName) }}
{{- fail "nodeprep: aggregator.clusterView.enabled=false needs clusterName: without the Kubernetes API the aggregator cannot check ServiceAccount tokens, so this release's agents get a generated shared token, and a shared token is bound to one cluster name" }}
{{- end }}
{{- if and (eq $agentAuth "serviceAccount") (not .Values.agent.serviceAccount.create) (not .Values.agent.serviceAccount.name) }}
{{- fail "nodeprep: agent.serviceAccount.create=false needs agent.serviceAccount.name: the aggregator accepts the tokens of exactly that ServiceAccount, and the namespace's default one would let any pod in it report for its node" }}
{{- end }}
{{- if and (include "nodeprep.aggregator.clusterView" .) (not .Values.aggregator.serviceAccount.create) (not .Values.aggregator.serviceAccount.name) }}
{{- fail "nodeprep: aggregator.serviceAccount.create=false needs aggregator.serviceAccount.name: the cluster view's ClusterRole would otherwise be bound to the namespace's default ServiceAccount" }}
{{- end }}
{{- if and .Values.aggregator.enabled .Values.aggregator.tls.enabled .Values.aggregator.tls.certManager.enabled .Values.aggregator.tls.existingSecret }}
{{- fail "nodeprep: aggregator.tls.certManager.enabled and aggregator.tls.existingSecret are both set: choose one source for the certificate" }}
{{- end }}
{{- if and .Values.aggregator.enabled .Values.aggregator.tls.enabled .Values.aggregator.tls.certManager.enabled (not .Values.aggregator.tls.certManager.issuerRef.name) }}
{{- fail "nodeprep: aggregator.tls.certManager.enabled needs aggregator.tls.certManager.issuerRef.name (an Issuer in this namespace, or a ClusterIssuer with issuerRef.kind=ClusterIssuer)" }}
{{- end }}
{{- if and .Values.aggregator.metrics.scraperServiceAccount.name (not .Values.aggregator.metrics.scraperServiceAccount.namespace) }}
{{- fail "nodeprep: aggregator.metrics.scraperServiceAccount.name needs aggregator.metrics.scraperServiceAccount.namespace (where Prometheus runs, e.g. monitoring)" }}
{{- end }}
{{- if and .Values.agent.enabled (eq .Values.agent.hostMounts.recursiveReadOnly "Enabled") (not (include "nodeprep.agent.recursiveReadOnly" .)) }}
{{- fail (printf "nodeprep: agent.hostMounts.recursiveReadOnly=Enabled needs Kubernetes 1.30 or later (this cluster: %s); use IfPossible" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- if and .Values.aggregator.enabled .Values.aggregator.networkPolicy.enabled (not .Values.aggregator.networkPolicy.agentCIDRs) }}
{{- fail "nodeprep: aggregator.networkPolicy.enabled needs aggregator.networkPolicy.agentCIDRs (the node CIDRs): agents use hostNetwork, so no podSelector can let them in" }}
{{- end }}
{{- end }}
