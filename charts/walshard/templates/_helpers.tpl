{{/*
Names and labels shared by every template.
*/}}

{{- define "walshard.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The full name: the release name when it already contains the chart name, else "<release>-<chart>".
*/}}
{{- define "walshard.fullname" -}}
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

{{- define "walshard.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "walshard.selectorLabels" -}}
app.kubernetes.io/name: {{ include "walshard.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "walshard.labels" -}}
helm.sh/chart: {{ include "walshard.chart" . }}
{{ include "walshard.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: walshard
{{- end -}}

{{- define "walshard.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "walshard.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
"<repository>:<tag>", the tag defaulting to the chart's appVersion. Call with (dict "image" <values> "root" $).
*/}}
{{- define "walshard.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/*
The watched namespaces, validated: unique DNS-1123 labels. Empty list = cluster-wide.
*/}}
{{- define "walshard.watchNamespaces" -}}
{{- $seen := dict -}}
{{- range .Values.watchNamespaces -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" .) -}}
{{- fail (printf "watchNamespaces: %q is not a namespace name (DNS-1123 label)" .) -}}
{{- end -}}
{{- if hasKey $seen . -}}
{{- fail (printf "watchNamespaces: %q is listed twice" .) -}}
{{- end -}}
{{- $_ := set $seen . true -}}
{{- end -}}
{{- join "," .Values.watchNamespaces -}}
{{- end -}}

{{/*
The operator's permissions in a namespace it manages (a ClusterRole's rules when it manages all).
Least privilege: exactly the verbs the reconciler uses.
  - get/list/watch: the Controller watches its ShardedDatabases and every kind it owns, and the
    control plane reads pod status;
  - create: generated Secrets are created once and never overwritten (create, AlreadyExists = keep);
    the other kinds are written with server-side apply (patch), create is kept for the first write;
  - patch: server-side apply with one field manager, and finalizers on ShardedDatabases;
  - delete: orphan cleanup (a removed server's pod/StatefulSet, Services, PDB; its PVC when the
    retention policy says so), and replacing a failed server's pod.
  - no update, deletecollection, escalate, bind or impersonate anywhere, except `update` on
    ShardedDatabases (the router's Role includes it: see below), on shardeddatabases/finalizers (an
    owner reference with blockOwnerDeletion needs it) and on Leases (renewing a lease is a
    replace with resourceVersion).
The operator creates the router's Role, and Kubernetes lets a subject create a Role (or bind it)
only when it holds every permission in it: the router's Role (watch its ShardedDatabase, read it,
turn /init, /add, /rm into spec patches or updates: shardeddatabases get/list/watch/patch/update)
must stay a subset of these rules.
*/}}
{{- define "walshard.operatorRules" -}}
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabases"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabases/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabases/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods", "services", "configmaps", "secrets", "persistentvolumeclaims", "serviceaccounts"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments", "statefulsets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
