{{- define "mairust.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mairust.fullname" -}}
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

{{- define "mairust.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mairust.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "mairust.podLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{/* mairust.selectorLabels: (dict "ctx" $ "component" "agent") */}}
{{- define "mairust.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mairust.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mairust.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* mairust.port: the port of a listen address such as 0.0.0.0:2525 (empty for an empty address). */}}
{{- define "mairust.port" -}}
{{- if . -}}{{- splitList ":" (toString .) | last -}}{{- end -}}
{{- end -}}

{{- define "mairust.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "mairust.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mairust.postgresql.secretName" -}}
{{- default (include "mairust.postgresql.fullname" .) .Values.postgresql.existingSecret -}}
{{- end -}}

{{- define "mairust.controlplane.secretName" -}}
{{- default (printf "%s-controlplane" (include "mairust.fullname" .)) .Values.controlplane.existingSecret -}}
{{- end -}}

{{- define "mairust.requireDatabase" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.database.external.existingSecret) -}}
{{- fail "set database.external.existingSecret (a Secret with the database URLs) or postgresql.enabled=true" -}}
{{- end -}}
{{- end -}}

{{/* mairust.agentDatabaseEnv: MAIRUST_DATABASE_URL, from the bundled PostgreSQL or the external secret. */}}
{{- define "mairust.agentDatabaseEnv" -}}
{{- include "mairust.requireDatabase" . -}}
{{- if .Values.postgresql.enabled }}
- name: MAIRUST_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mairust.postgresql.secretName" . }}
      key: {{ .Values.postgresql.existingSecretKeys.password }}
- name: MAIRUST_DATABASE_URL
  value: {{ printf "postgres://%s:$(MAIRUST_DB_PASSWORD)@%s:5432/%s?sslmode=disable" .Values.postgresql.username (include "mairust.postgresql.fullname" .) .Values.postgresql.database | quote }}
{{- else }}
- name: MAIRUST_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.external.existingSecret }}
      key: {{ .Values.database.external.keys.url }}
{{- end }}
{{- end -}}

{{- define "mairust.controlplaneDatabaseEnv" -}}
{{- include "mairust.requireDatabase" . -}}
{{- if .Values.postgresql.enabled }}
- name: MAIRUST_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mairust.postgresql.secretName" . }}
      key: {{ .Values.postgresql.existingSecretKeys.password }}
- name: MAIRUST_CP_APP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mairust.postgresql.secretName" . }}
      key: {{ .Values.postgresql.existingSecretKeys.controlplaneAppPassword }}
- name: MAIRUST_CONTROLPLANE_DATABASE_URL
  value: {{ printf "postgres://%s:$(MAIRUST_DB_PASSWORD)@%s:5432/%s?sslmode=disable" .Values.postgresql.username (include "mairust.postgresql.fullname" .) .Values.postgresql.controlplaneDatabase | quote }}
- name: MAIRUST_CONTROLPLANE_APP_DATABASE_URL
  value: {{ printf "postgres://mairust_cp:$(MAIRUST_CP_APP_PASSWORD)@%s:5432/%s?sslmode=disable" (include "mairust.postgresql.fullname" .) .Values.postgresql.controlplaneDatabase | quote }}
{{- else }}
- name: MAIRUST_CONTROLPLANE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.external.existingSecret }}
      key: {{ .Values.database.external.keys.controlplaneUrl }}
{{- if .Values.database.external.keys.controlplaneAppUrl }}
- name: MAIRUST_CONTROLPLANE_APP_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.external.existingSecret }}
      key: {{ .Values.database.external.keys.controlplaneAppUrl }}
{{- end }}
{{- end }}
{{- end -}}

{{/* mairust.secretEnv: (dict "secret" NAME "env" MAP) */}}
{{- define "mairust.secretEnv" -}}
{{- range $name, $key := .env }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $.secret }}
      key: {{ $key }}
{{- end }}
{{- end -}}
