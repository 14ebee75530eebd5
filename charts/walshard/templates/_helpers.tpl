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
Least privilege: exactly the verbs the operator's code uses (operator/README.md, "Operator binary"):
  - list/watch: the Controller watches ShardedDatabases and the kinds it owns (StatefulSets,
    Services, Deployments, PodDisruptionBudgets, ConfigMaps, Secrets);
  - create + patch: every other object is written by server-side apply, and an apply that creates
    the object needs create as well as patch;
  - shardeddatabases patch: the finalizer (JSON patch) and the control plane's settled-replicas
    annotation (apply); shardeddatabases/status patch: both field managers' status applies;
  - shardeddatabases get: not used by the operator itself, but held so that it may create the
    router's Role (get, list, watch, patch on its ShardedDatabase): Kubernetes lets a subject
    create a Role or bind it only when it holds every permission in it, so the router's Role must
    stay a subset of these rules;
  - shardeddatabases/finalizers update: owner references with blockOwnerDeletion;
  - secrets get + create + patch, never delete: the generated Secret is created once; a patch only
    adds a key a newer operator generates (the router's admin token) and never changes one; user
    Secrets named in credentials refs are read;
  - statefulsets delete: a drained server's StatefulSet; statefulsets patch also switches a
    removed server's claim retention to Retain before that;
  - pods delete: rolling an updated template out, one server at a time (OnDelete StatefulSets);
    pods list + watch: a server pod being deleted by someone else (eviction, drain) has its
    primaries handed over while its preStop hook holds it;
  - persistentvolumeclaims get + delete: a removed server's claim is checked (Retain) or deleted
    (Delete), and every claim when the database goes with retention.whenDeleted: Delete;
    persistentvolumeclaims patch: volume expansion (a larger storage.size);
  - events.k8s.io events create + patch: the Event recorder (a repeat patches the series).
No update, deletecollection, escalate, bind or impersonate, apart from the finalizers' update.
Leader election has its own Role in the release namespace (rbac.yaml).
*/}}
{{- define "walshard.operatorRules" -}}
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabases"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabases/status"]
  verbs: ["patch"]
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabases/finalizers"]
  verbs: ["update"]
# Backups: requests are watched and run, scheduled ones created, those whose backups retention
# removed deleted.
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabasebackups"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["walshard.io"]
  resources: ["shardeddatabasebackups/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services", "configmaps"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}
