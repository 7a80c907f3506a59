{{/* The run's name: every object of the release is called this. */}}
{{- define "shoal.fullname" -}}
{{- printf "%s-shoal" .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{- define "shoal.labels" -}}
app.kubernetes.io/name: shoal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "shoal.selector" -}}
app.kubernetes.io/name: shoal
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "shoal.secretName" -}}
{{- default (include "shoal.fullname" .) .Values.secret.existingSecret -}}
{{- end -}}

{{- define "shoal.claimName" -}}
{{- default (include "shoal.fullname" .) .Values.persistence.existingClaim -}}
{{- end -}}
