{{/* The release's base name for every object. */}}
{{- define "tidewright.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tidewright.labels" -}}
app.kubernetes.io/part-of: tidewright
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* An image by digest when given one (what runs cannot change under a tag), by tag otherwise. */}}
{{- define "tidewright.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "tidewright.workerImage" -}}
{{- if .Values.workerImage.digest -}}
{{ .Values.workerImage.repository }}@{{ .Values.workerImage.digest }}
{{- else -}}
{{ .Values.workerImage.repository }}:{{ .Values.workerImage.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* The control plane's address inside the cluster. */}}
{{- define "tidewright.server" -}}
http://{{ include "tidewright.fullname" . }}.{{ .Release.Namespace }}.svc:{{ .Values.controlPlane.port }}
{{- end -}}

{{/*
A token, kept across upgrades: the one already in the Secret when there is
one, a new random one otherwise. Call with (list $ "secret-name").
*/}}
{{- define "tidewright.token" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- if and $existing $existing.data (hasKey $existing.data "token") -}}
{{- index $existing.data "token" | b64dec -}}
{{- else -}}
{{- randAlphaNum 48 -}}
{{- end -}}
{{- end -}}

{{- define "tidewright.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}
