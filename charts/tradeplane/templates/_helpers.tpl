{{/* Chart name, overridable. */}}
{{- define "tradeplane.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: "<release>-<chart>", or the release name when it already contains the chart name. */}}
{{- define "tradeplane.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's objects: "<fullname>-operator", so they never collide with the
objects the operator creates for a TradingPlatform named like the release. */}}
{{- define "tradeplane.operatorName" -}}
{{- printf "%s-operator" (include "tradeplane.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{/* "name-version" for the helm.sh/chart label. */}}
{{- define "tradeplane.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object (each template adds its app.kubernetes.io/component). */}}
{{- define "tradeplane.labels" -}}
helm.sh/chart: {{ include "tradeplane.chart" . }}
app.kubernetes.io/name: {{ include "tradeplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tradeplane
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the operator pods; never change them after a release exists. */}}
{{- define "tradeplane.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tradeplane.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/* Operator ServiceAccount name. */}}
{{- define "tradeplane.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "tradeplane.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Operator image reference: digest wins over tag, tag defaults to appVersion. */}}
{{- define "tradeplane.operatorImage" -}}
{{- $img := .Values.operator.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Platform image reference for the optional TradingPlatform. */}}
{{- define "tradeplane.platformImage" -}}
{{- printf "%s:%s" .Values.platform.image.repository (default .Chart.AppVersion .Values.platform.image.tag) -}}
{{- end -}}

{{/* Namespace the TradingPlatform from values goes to: the watched one, else the release's. */}}
{{- define "tradeplane.platformNamespace" -}}
{{- default .Release.Namespace .Values.operator.watchNamespace -}}
{{- end -}}

{{/* Leader election is on when asked for, and must be when more than one replica runs. */}}
{{- define "tradeplane.leaderElection" -}}
{{- if and (gt (int .Values.operator.replicaCount) 1) (not .Values.operator.leaderElection.enabled) -}}
{{- fail "operator.leaderElection.enabled must be true when operator.replicaCount > 1" -}}
{{- end -}}
{{- ternary "true" "false" .Values.operator.leaderElection.enabled -}}
{{- end -}}
