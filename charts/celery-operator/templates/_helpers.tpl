{{/* Names and labels shared by every template. Deterministic: no random or time values. */}}

{{- define "celery-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "celery-operator.fullname" -}}
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

{{- define "celery-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "celery-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "celery-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "celery-operator.labels" -}}
helm.sh/chart: {{ include "celery-operator.chart" . }}
{{ include "celery-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: celery-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "celery-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "celery-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the Celery URLs: the user's, or the one this chart creates. */}}
{{- define "celery-operator.celerySecretName" -}}
{{- if .Values.celery.existingSecret -}}
{{- .Values.celery.existingSecret -}}
{{- else -}}
{{- printf "%s-celery" (include "celery-operator.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "celery-operator.brokerUrlKey" -}}
{{- if .Values.celery.existingSecret -}}{{ .Values.celery.existingSecretKeys.brokerUrl }}{{- else -}}broker-url{{- end -}}
{{- end -}}

{{- define "celery-operator.resultBackendKey" -}}
{{- if .Values.celery.existingSecret -}}{{ .Values.celery.existingSecretKeys.resultBackend }}{{- else -}}result-backend{{- end -}}
{{- end -}}

{{- define "celery-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The rules the operator needs in every namespace it watches, and nothing else. Each rule is
proved necessary by tests/integration/test_rbac.py (taking any verb away breaks a check).
*/}}
{{- define "celery-operator.namespacedRules" -}}
# Watch both kinds (kopf lists and watches them), re-read one after a write conflict.
# ScheduledTasks: create the runs of PeriodicTasks, revoke a run (concurrencyPolicy:
# Replace patches its spec.revoke), delete finished ones (ttlSecondsAfterFinished and the
# run-history limits).
- apiGroups: [celeryoperator.dev]
  resources: [scheduledtasks]
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [celeryoperator.dev]
  resources: [periodictasks]
  verbs: [get, list, watch]
# The apps of the namespace: kopf lists and watches them for the app directory.
- apiGroups: [celeryoperator.dev]
  resources: [celeryapps]
  verbs: [list, watch]
# The only writes to objects from Git: their status.
- apiGroups: [celeryoperator.dev]
  resources: [scheduledtasks/status, periodictasks/status, celeryapps/status]
  verbs: [patch]
# The broker and backend URLs of the apps: `get` by name only (no list, no watch), so the
# operator reads just the Secrets the apps reference.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
# One core/v1 Event per state change (kopf's own Event posting is disabled).
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/*
Cluster-scoped rules: the ClusterCeleryApps and namespace labels (above), and the reads kopf itself makes (verified with the ServiceAccount's own token:
tests/integration/test_rbac.py). It watches CRDs to notice its resources appearing or
changing; without the grant it logs a 403 on every retry. Only when it watches a list of
namespaces does it also list and watch Namespaces (to know which of them exist): without
that it stalls for about a minute at start-up, retrying the 403, and never notices a
watched namespace created later.
*/}}
{{- define "celery-operator.clusterRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
# ClusterCeleryApps (cluster-scoped): watched like CeleryApps, their status written.
- apiGroups: [celeryoperator.dev]
  resources: [clusterceleryapps]
  verbs: [list, watch]
- apiGroups: [celeryoperator.dev]
  resources: [clusterceleryapps/status]
  verbs: [patch]
# A task's namespace labels, for a ClusterCeleryApp's namespaceSelector: `get` by name.
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
{{- if .Values.watch.namespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end -}}

{{/* The leader election Lease: leaderElection.leaseName, else the release's full name. */}}
{{- define "celery-operator.leaseName" -}}
{{- default (include "celery-operator.fullname" .) .Values.leaderElection.leaseName -}}
{{- end }}
