{{/* Name of the release's objects: the release name, with the chart name when it is not already in it. */}}
{{- define "modelship.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "modelship.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelship.labels" -}}
{{ include "modelship.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "modelship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "modelship.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "modelship.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The namespaces watched in namespaced mode: the list given, or the release namespace. */}}
{{- define "modelship.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson .Values.watchNamespaces -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* An operator Deployment's name, and its kopf peering's under HA (given root and shard): the
release's full name, with the shard's name when sharded, so each shard elects its own active replica. */}}
{{- define "modelship.operatorName" -}}
{{- if .shard -}}
{{- printf "%s-%s" (include "modelship.fullname" .root) .shard.name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- include "modelship.fullname" .root -}}
{{- end -}}
{{- end -}}

{{- define "modelship.replicas" -}}
{{- if .Values.ha.enabled -}}{{ .Values.ha.replicas }}{{- else -}}{{ .Values.replicaCount }}{{- end -}}
{{- end -}}

{{/* The dashboard's objects (dashboard.enabled): their own name and selector, so neither the
operator's Deployment nor its metrics Service ever selects the dashboard's pods. */}}
{{- define "modelship.dashboard.fullname" -}}
{{- printf "%s-dashboard" (include "modelship.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelship.dashboard.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}-dashboard
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelship.dashboard.labels" -}}
{{ include "modelship.dashboard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: dashboard
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
