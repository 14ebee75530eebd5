#!/usr/bin/env bash
# walshard on a real Kubernetes (kind): build the three images, load them into a kind cluster,
# install the chart, create the seed's default ShardedDatabase, write through the router, delete
# the pod of a shard's primary, wait for the failover, and check that every acknowledged write is
# still readable; then a rolling restart under writes (primaries handed over before each pod goes)
# and a switchover by annotation; then backups: MinIO in the cluster, spec.backup, a
# ShardedDatabaseBackup, the database deleted and restored from the store (spec.restore) with
# every acknowledged write. Needs docker (with a running daemon), kind, kubectl, helm, curl and make.
# Not run in this project's CI (no Docker there): see tests/e2e/README.md.
#
# Settings (environment):
#   KIND_CLUSTER        cluster name (default walshard-e2e); an existing cluster of that name is
#                       reused and then kept
#   KEEP_CLUSTER=1      keep the cluster (and the database) at the end, even on success
#   SKIP_BUILD=1        do not build the images (they are already in the cluster as :$TAG)
#   TAG                 image tag (default dev: walshard/{operator,agent,router}:dev)
#   PRELOAD_IMAGES      images to pull here and `kind load` (default mysql:8.4, the engine image
#                       of examples/seed-default.yaml; empty: the nodes pull it themselves)
#   E2E_NAMESPACE       namespace of the ShardedDatabase (default walshard-e2e)
#   OPERATOR_NAMESPACE  namespace of the chart release (default walshard-system)
#   E2E_WRITES          acknowledged-write target per phase (default 200; three phases)
#   READY_TIMEOUT       kubectl wait timeout for Ready (default 15m: the first MySQL pulls)
#   FAILOVER_TIMEOUT    seconds to wait for a new primary (default 180)
#   ROUTER_LOCAL_PORT   local port of the router port-forward (default 15000)
#   SHARD_INDEX         which shard of status.shards loses its primary (default 0)
#   SKIP_BACKUP=1       skip the backup -> delete -> restore phase
#   MINIO_NAMESPACE, MINIO_IMAGE, MC_IMAGE   the S3-compatible server of that phase
#
# Naming conventions assumed (adapt here if the operator names things differently):
#   - the pod of server <Server> of database <db> is "<db>-<server lowercased>-0", the one pod
#     of its StatefulSet (k8s-api/src/names.rs; SERVER_POD_FORMAT, default '%s-%s-0');
#   - the router Service is "<db>-router", port 5000 (the seed API);
#   - status.shards[i].primary is the server name (e.g. Server3) of shard i's primary.
set -euo pipefail
# The repository root, without external commands (the tool check below must run on any PATH).
here=${BASH_SOURCE[0]%/*}
[ "$here" != "${BASH_SOURCE[0]}" ] || here=.
cd "$here/../.."

cluster=${KIND_CLUSTER:-walshard-e2e}
tag=${TAG:-dev}
preload=${PRELOAD_IMAGES-mysql:8.4}
ns=${E2E_NAMESPACE:-walshard-e2e}
operator_ns=${OPERATOR_NAMESPACE:-walshard-system}
release=walshard
example=examples/seed-default.yaml
writes=${E2E_WRITES:-200}
ready_timeout=${READY_TIMEOUT:-15m}
failover_timeout=${FAILOVER_TIMEOUT:-180}
local_port=${ROUTER_LOCAL_PORT:-15000}
shard_index=${SHARD_INDEX:-0}
server_pod_format=${SERVER_POD_FORMAT:-%s-%s-0}
key_space=16384 # examples/seed-default.yaml: 4 shards x 4096 keys, Stud_id 0..16383

log() { printf '==> [%s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
  printf 'kind-e2e: FAILED: %s\n' "$*" >&2
  exit 1
}

# --- prerequisites -----------------------------------------------------------------------------
missing=()
for tool in docker kind kubectl helm curl make awk mktemp date tr seq sort comm grep wc head; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing tools: ${missing[*]} (this suite needs Docker, kind, kubectl, helm, curl and make; see tests/e2e/README.md)"
fi
docker info >/dev/null 2>&1 || die "docker is installed but its daemon is not reachable (docker info failed)"

work=$(mktemp -d "${TMPDIR:-/tmp}/walshard-e2e.XXXXXX")
acked=$work/acked-keys
: >"$acked"
created_cluster=0
reused_cluster=0
installed=0
pf_pid=""
router=http://127.0.0.1:$local_port

db=$(awk '/^metadata:/ { m = 1; next } m && /^  name:/ { print $2; exit }' "$example")
[ -n "$db" ] || die "could not read metadata.name from $example"
router_service=${ROUTER_SERVICE:-$db-router}

server_pod() {
  # shellcheck disable=SC2059 # the format is the documented, adaptable naming convention
  printf "$server_pod_format" "$db" "$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]')"
}

diagnostics() {
  echo "---- diagnostics ----" >&2
  kubectl get sdb,pods,svc,pvc -n "$ns" -o wide >&2 || true
  kubectl describe sdb "$db" -n "$ns" >&2 || true
  kubectl get events -n "$ns" --sort-by=.lastTimestamp >&2 || true
  kubectl logs -n "$operator_ns" -l app.kubernetes.io/name=walshard --tail=200 >&2 || true
}

cleanup() {
  local rc=$?
  if [ -n "$pf_pid" ]; then kill "$pf_pid" 2>/dev/null || true; fi
  if [ "$rc" -ne 0 ] && [ "$installed" = 1 ]; then diagnostics; fi
  if [ "$created_cluster" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
    log "deleting kind cluster $cluster (KEEP_CLUSTER=1 keeps it)"
    kind delete cluster --name "$cluster" || true
  elif [ "$created_cluster" = 1 ] || [ "$reused_cluster" = 1 ]; then
    log "keeping kind cluster $cluster (kubectl --context kind-$cluster; kind delete cluster --name $cluster)"
  fi
  rm -rf "$work"
  if [ "$rc" -eq 0 ]; then log "PASSED"; else echo "kind-e2e: FAILED (exit $rc)" >&2; fi
}
trap cleanup EXIT

# --- cluster -----------------------------------------------------------------------------------
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "reusing kind cluster $cluster (it is kept at the end)"
  reused_cluster=1
else
  log "creating kind cluster $cluster"
  kind create cluster --name "$cluster" --wait 120s
  created_cluster=1
fi
kubectl config use-context "kind-$cluster" >/dev/null

# --- images ------------------------------------------------------------------------------------
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  log "building walshard/{operator,agent,router}:$tag (make images)"
  make images TAG="$tag"
fi
log "loading the images into $cluster (make kind-load)"
make kind-load TAG="$tag" KIND_CLUSTER="$cluster"
for image in $preload; do
  log "preloading $image"
  docker image inspect "$image" >/dev/null 2>&1 || docker pull "$image"
  kind load docker-image "$image" --name "$cluster"
done

# --- install -----------------------------------------------------------------------------------
log "helm install $release charts/walshard (namespace $operator_ns, images :$tag)"
helm upgrade --install "$release" charts/walshard \
  --namespace "$operator_ns" --create-namespace \
  --set operator.image.tag="$tag" --set operator.image.pullPolicy=Never \
  --set agent.image.tag="$tag" --set agent.image.pullPolicy=IfNotPresent \
  --set router.image.tag="$tag" --set router.image.pullPolicy=IfNotPresent \
  --set logLevel=debug \
  --wait --timeout 5m
installed=1
kubectl wait --for=condition=Established crd/shardeddatabases.walshard.io crd/shardeddatabasebackups.walshard.io --timeout=60s

# A fresh namespace every run: the workload inserts keys, which must not exist yet.
if kubectl get namespace "$ns" >/dev/null 2>&1; then
  log "deleting namespace $ns left by an earlier run (its database, pods and volumes)"
  kubectl delete namespace "$ns" --wait --timeout=5m
fi
log "applying $example in namespace $ns"
kubectl create namespace "$ns"
kubectl apply -n "$ns" -f "$example"
log "waiting for sdb/$db to be Ready (timeout $ready_timeout)"
kubectl wait -n "$ns" --for=condition=Ready "sdb/$db" --timeout="$ready_timeout"
kubectl get sdb -n "$ns" "$db"

# --- router ------------------------------------------------------------------------------------
start_port_forward() {
  if [ -n "$pf_pid" ] && kill -0 "$pf_pid" 2>/dev/null; then return 0; fi
  kubectl port-forward -n "$ns" "svc/$router_service" "$local_port:5000" >"$work/port-forward.log" 2>&1 &
  pf_pid=$!
  local i
  for i in $(seq 1 60); do
    if curl -fsS --max-time 2 "$router/status" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pf_pid" 2>/dev/null || break
    sleep 1
  done
  cat "$work/port-forward.log" >&2
  die "the router did not answer GET /status through port-forward svc/$router_service (waited ${i}s)"
}
log "port-forwarding svc/$router_service to 127.0.0.1:$local_port"
start_port_forward
curl -fsS "$router/status"
echo

# write_range FIRST COUNT: one single-row POST /write per key; a key is recorded in $acked only
# when the router answered 200 with "status":"success". Failures are counted, not fatal (writes
# during a failover may be refused with 503: those are not acknowledged).
write_range() {
  local first=$1 count=$2 i key code ok=0 failed=0
  for ((i = first; i < first + count; i++)); do
    key=$(((i * 7919) % key_space)) # 7919 is coprime with 16384: distinct keys for i < 16384
    code=$(curl -sS -o "$work/write.$first.out" -w '%{http_code}' --max-time 10 \
      -H 'content-type: application/json' -X POST "$router/write" \
      -d "{\"data\":[{\"Stud_id\":$key,\"Stud_name\":\"e2e-$key\",\"Stud_marks\":$((key % 100))}]}" ||
      echo 000)
    if [ "$code" = 200 ] && grep -q '"status": *"success"' "$work/write.$first.out"; then
      echo "$key" >>"$acked"
      ok=$((ok + 1))
    else
      failed=$((failed + 1))
      if [ "$failed" -le 3 ]; then
        echo "    write of key $key: HTTP $code $(head -c 300 "$work/write.$first.out" 2>/dev/null)" >&2
      fi
    fi
  done
  log "writes $first..$((first + count - 1)): $ok acknowledged, $failed not"
}

primary_of_shard() {
  kubectl get sdb -n "$ns" "$db" -o jsonpath="{.status.shards[$shard_index].primary}"
}

# --- workload, failover ------------------------------------------------------------------------
log "phase 1: $writes writes"
write_range 0 "$writes"
[ "$(wc -l <"$acked")" -gt 0 ] || die "no write was acknowledged before the failover"

old_primary=$(primary_of_shard)
[ -n "$old_primary" ] || die "status.shards[$shard_index].primary is empty"
victim=$(server_pod "$old_primary")
log "shard $shard_index: $(kubectl get sdb -n "$ns" "$db" -o jsonpath="{.status.shards[$shard_index]}")"
kubectl get pod -n "$ns" "$victim" >/dev/null ||
  die "pod $victim (primary $old_primary) not found: adapt SERVER_POD_FORMAT to the operator's naming"

log "phase 2: deleting pod $victim (primary $old_primary of shard $shard_index) under $writes writes"
write_range "$writes" "$writes" &
writer=$!
kubectl delete pod -n "$ns" "$victim" --wait=false

deadline=$((SECONDS + failover_timeout))
new_primary=""
while [ "$SECONDS" -lt "$deadline" ]; do
  new_primary=$(primary_of_shard || true)
  if [ -n "$new_primary" ] && [ "$new_primary" != "$old_primary" ]; then break; fi
  sleep 1
done
wait "$writer"
[ -n "$new_primary" ] && [ "$new_primary" != "$old_primary" ] ||
  die "shard $shard_index still has primary '${new_primary:-<none>}' after ${failover_timeout}s"
log "failover: shard $shard_index primary $old_primary -> $new_primary" \
  "(epoch $(kubectl get sdb -n "$ns" "$db" -o jsonpath="{.status.shards[$shard_index].epoch}"))"

log "phase 3: $writes writes after the failover"
start_port_forward
write_range $((2 * writes)) "$writes"

log "waiting for $victim to come back and sdb/$db to be Ready again"
deadline=$((SECONDS + failover_timeout))
until kubectl get pod -n "$ns" "$victim" >/dev/null 2>&1; do
  [ "$SECONDS" -lt "$deadline" ] || die "pod $victim was not recreated within ${failover_timeout}s"
  sleep 2
done
kubectl wait -n "$ns" --for=condition=Ready "pod/$victim" --timeout="$ready_timeout"
kubectl wait -n "$ns" --for=condition=Ready "sdb/$db" --timeout="$ready_timeout"

# --- planned disruptions: a rolling restart and a user switchover under writes ------------------
# A template change (the grace period) makes the operator restart every server, one at a time,
# switching a server's primaries over before deleting its pod (Events HandingOver, Restarting).
log "phase 4: rolling restart (spec.pod.terminationGracePeriodSeconds 60 -> 61) under $writes writes"
start_port_forward
write_range $((3 * writes)) "$writes" &
writer=$!
kubectl patch sdb -n "$ns" "$db" --type merge -p '{"spec":{"pod":{"terminationGracePeriodSeconds":61}}}'
deadline=$((SECONDS + 6 * failover_timeout))
while [ "$SECONDS" -lt "$deadline" ]; do
  # Every server pod runs the new template when each pod's grace period is 61.
  old=$(kubectl get pods -n "$ns" -l app.kubernetes.io/component=server \
    -o jsonpath='{range .items[*]}{.spec.terminationGracePeriodSeconds}{"\n"}{end}' | grep -vc '^61$' || true)
  [ "$old" = "0" ] && break
  sleep 3
done
wait "$writer" || true
[ "$old" = "0" ] || die "the rolling restart did not finish within $((6 * failover_timeout))s"
kubectl wait -n "$ns" --for=condition=Ready "sdb/$db" --timeout="$ready_timeout"
handovers=$(kubectl get events -n "$ns" --field-selector reason=HandingOver -o name | wc -l)
restarts=$(kubectl get events -n "$ns" --field-selector reason=Restarting -o name | wc -l)
log "rolling restart done: $restarts Restarting and $handovers HandingOver Events"
[ "$restarts" -gt 0 ] || die "no Restarting Event: was the template change rolled out?"
[ "$handovers" -gt 0 ] || die "no HandingOver Event: primaries were not switched over before their pods went"

# A user switchover by annotation: shard $shard_index to another of its replicas.
shard_id=$(kubectl get sdb -n "$ns" "$db" -o jsonpath="{.status.shards[$shard_index].id}")
current=$(primary_of_shard)
# Another replica of the shard, from the seed's /status (servers: {"Server0": ["sh1", ...]}).
start_port_forward
target=$(curl -fsS --max-time 30 "$router/status" | grep -o '"Server[0-9]*": *\[[^]]*\]' |
  grep "\"$shard_id\"" | grep -o '^"Server[0-9]*' | tr -d '"' | grep -vx "$current" | head -n 1)
[ -n "$target" ] || die "no other replica of $shard_id found in the router's /status"
log "phase 5: switchover of $shard_id from $current (annotation walshard.io/switchover=$shard_id=$target)"
kubectl annotate sdb -n "$ns" "$db" "walshard.io/switchover=$shard_id=$target" --overwrite
deadline=$((SECONDS + failover_timeout))
while [ "$SECONDS" -lt "$deadline" ]; do
  left=$(kubectl get sdb -n "$ns" "$db" -o jsonpath='{.metadata.annotations.walshard\.io/switchover}')
  [ -z "$left" ] && break
  sleep 1
done
[ -z "$left" ] || die "the switchover annotation is still there after ${failover_timeout}s"
[ "$(primary_of_shard)" = "$target" ] ||
  die "$shard_id has primary $(primary_of_shard), not $target ($(kubectl get events -n "$ns" --field-selector reason=SwitchoverRefused -o jsonpath='{.items[*].note}'))"
log "switchover done: $shard_id primary $current -> $target"

# --- GitOps: the router's /add lives in spec.layout; re-applying the manifest keeps it ----------
log "phase 6: router /add of Server9, then kubectl apply (client- and server-side) of $example"
start_port_forward
admin_token=$(kubectl get secret -n "$ns" "$db-credentials" -o jsonpath='{.data.router-admin-token}' | base64 -d)
shard_id=$(kubectl get sdb -n "$ns" "$db" -o jsonpath="{.status.shards[0].id}")
curl -fsS --max-time 180 -H 'content-type: application/json' -H "authorization: Bearer $admin_token" \
  -X POST "$router/add" -d "{\"n\":1,\"servers\":{\"Server9\":[\"$shard_id\"]}}" >"$work/add.json" ||
  die "POST /add failed: $(head -c 300 "$work/add.json" 2>/dev/null)"
layout_servers() {
  kubectl get sdb -n "$ns" "$db" -o jsonpath='{range .spec.layout.servers[*]}{.name}{"\n"}{end}'
}
layout_servers | grep -qx Server9 || die "spec.layout does not name Server9 after /add"
kubectl get sdb -n "$ns" "$db" -o jsonpath='{.metadata.managedFields[?(@.manager=="walshard-router")].fieldsV1}' |
  grep -q '"f:layout"' || die "spec.layout is not owned by the field manager walshard-router"
kubectl apply -n "$ns" -f "$example" || die "client-side kubectl apply of $example was refused after /add"
layout_servers | grep -qx Server9 || die "client-side kubectl apply undid the /add"
kubectl apply -n "$ns" --server-side --field-manager=e2e-gitops -f "$example" ||
  die "server-side kubectl apply of $example was refused after /add (conflict with walshard-router?)"
layout_servers | grep -qx Server9 || die "server-side kubectl apply undid the /add"
kubectl wait -n "$ns" --for=condition=Ready "sdb/$db" --timeout="$ready_timeout"
log "GitOps: spec.layout kept through both applies; Server9 added"

# --- nothing acknowledged is lost --------------------------------------------------------------
# check_every_acked_key: a strong read (the primary, after a read-index round with a majority) of
# the whole key range through the router port-forward; every acknowledged write must be visible.
# An eventual read may be served by a replica that has not applied the last entries yet: stale,
# not lost.
check_every_acked_key() {
  start_port_forward
  log "reading back every key (POST /read, Stud_id 0..$((key_space - 1)), consistency strong) through svc/$router_service"
  curl -fsS --max-time 60 -H 'content-type: application/json' -X POST "$router/read" \
    -d "{\"Stud_id\":{\"low\":0,\"high\":$((key_space - 1))},\"consistency\":\"strong\"}" >"$work/read.json"
  grep -q '"status": *"success"' "$work/read.json" || die "POST /read did not succeed: $(head -c 500 "$work/read.json")"
  # comm needs both lists in the same (lexical) order.
  grep -o '"Stud_id": *[0-9]*' "$work/read.json" | grep -o '[0-9]*$' | sort -u >"$work/present"
  sort -u "$acked" >"$work/acked-sorted"
  lost=$(comm -23 "$work/acked-sorted" "$work/present")
  total=$(wc -l <"$work/acked-sorted")
  if [ -n "$lost" ]; then
    die "$(printf '%s\n' "$lost" | wc -l) of $total acknowledged keys are missing: $(printf '%s\n' "$lost" | head -n 20 | tr '\n' ' ')"
  fi
  log "all $total acknowledged keys are readable ($(wc -l <"$work/present") rows in the table)"
}
check_every_acked_key

# --- backups: archive to MinIO, a base backup, delete the database, restore it ------------------
# MinIO (an S3-compatible server) in its own namespace, a bucket, the credentials Secret; then
# spec.backup on the database (the operator restarts every server with the archiving
# environment, one at a time), writes, a ShardedDatabaseBackup until Succeeded, more writes,
# until status.backup.restorableTo is past them; the database is deleted and a new one
# (spec.restore: the latest point) must hold every acknowledged key.
if [ "${SKIP_BACKUP:-0}" != 1 ]; then
  minio_ns=${MINIO_NAMESPACE:-walshard-minio}
  minio_image=${MINIO_IMAGE:-minio/minio:RELEASE.2025-04-22T22-12-26Z}
  mc_image=${MC_IMAGE:-minio/mc:RELEASE.2025-04-16T18-13-26Z}
  minio_user=walshard-e2e
  minio_password=walshard-e2e-secret
  bucket=walshard-backups
  store=s3://$bucket/e2e/$db
  endpoint=http://minio.$minio_ns.svc:9000
  restored=${db}r

  log "phase 7: MinIO ($minio_image) in namespace $minio_ns, bucket $bucket"
  kubectl get namespace "$minio_ns" >/dev/null 2>&1 || kubectl create namespace "$minio_ns"
  kubectl apply -n "$minio_ns" -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: minio}
spec:
  replicas: 1
  selector: {matchLabels: {app: minio}}
  template:
    metadata: {labels: {app: minio}}
    spec:
      containers:
        - name: minio
          image: $minio_image
          args: [server, /data]
          env:
            - {name: MINIO_ROOT_USER, value: $minio_user}
            - {name: MINIO_ROOT_PASSWORD, value: $minio_password}
          ports: [{containerPort: 9000}]
          readinessProbe: {httpGet: {path: /minio/health/ready, port: 9000}}
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: minio}
spec:
  selector: {app: minio}
  ports: [{port: 9000, targetPort: 9000}]
YAML
  kubectl wait -n "$minio_ns" --for=condition=Available deployment/minio --timeout=5m
  kubectl run -n "$minio_ns" mc-mb --rm -i --restart=Never --image="$mc_image" --command -- \
    sh -c "mc alias set m http://minio:9000 $minio_user $minio_password && mc mb --ignore-existing m/$bucket" ||
    die "could not create the bucket $bucket in MinIO"
  kubectl create secret generic s3 -n "$ns" \
    --from-literal=AWS_ACCESS_KEY_ID="$minio_user" --from-literal=AWS_SECRET_ACCESS_KEY="$minio_password" \
    --dry-run=client -o yaml | kubectl apply -f -
  s3_spec="{\"endpoint\":\"$endpoint\",\"region\":\"us-east-1\",\"credentialsSecretRef\":{\"name\":\"s3\"}}"

  log "phase 7: spec.backup (store $store): every server restarts with the archiving environment"
  kubectl patch sdb -n "$ns" "$db" --type merge \
    -p "{\"spec\":{\"backup\":{\"store\":\"$store\",\"s3\":$s3_spec,\"archiveIntervalMs\":500}}}"
  deadline=$((SECONDS + 6 * failover_timeout))
  while [ "$SECONDS" -lt "$deadline" ]; do
    old=$(kubectl get pods -n "$ns" -l app.kubernetes.io/component=server,app.kubernetes.io/instance="$db" \
      -o jsonpath='{range .items[*]}{range .spec.containers[?(@.name=="agent")].env[?(@.name=="WALSHARD_BACKUP_STORE")]}{.value}{end}{"\n"}{end}' |
      grep -vcx "$store" || true)
    [ "$old" = "0" ] && break
    sleep 3
  done
  [ "$old" = "0" ] || die "the servers were not restarted with WALSHARD_BACKUP_STORE=$store"
  kubectl wait -n "$ns" --for=condition=Ready "sdb/$db" --timeout="$ready_timeout"
  kubectl wait -n "$ns" --for=condition=ArchiveLagging=False "sdb/$db" --timeout=5m ||
    die "ArchiveLagging did not turn False: $(kubectl get sdb -n "$ns" "$db" -o jsonpath='{.status.conditions[?(@.type=="ArchiveLagging")].message}')"

  log "phase 7: $writes writes, a ShardedDatabaseBackup, $writes more writes"
  start_port_forward
  write_range $((4 * writes)) "$writes"
  kubectl apply -n "$ns" -f - <<YAML
apiVersion: walshard.io/v1alpha1
kind: ShardedDatabaseBackup
metadata: {name: e2e-backup}
spec: {database: $db}
YAML
  kubectl wait -n "$ns" --for=jsonpath='{.status.phase}'=Succeeded sdbb/e2e-backup --timeout=10m ||
    die "the backup did not succeed: $(kubectl get sdbb -n "$ns" e2e-backup -o jsonpath='{.status.phase}: {.status.message}')"
  kubectl get sdbb -n "$ns"
  backup_id=$(kubectl get sdbb -n "$ns" e2e-backup -o jsonpath='{.status.backupId}')
  [ -n "$backup_id" ] || die "the succeeded backup has no status.backupId"
  write_range $((5 * writes)) "$writes"
  written_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  log "waiting until status.backup.restorableTo is past $written_at (archive caught up)"
  deadline=$((SECONDS + 300))
  while [ "$SECONDS" -lt "$deadline" ]; do
    to=$(kubectl get sdb -n "$ns" "$db" -o jsonpath='{.status.backup.restorableTo}')
    # RFC 3339 UTC times of the same form compare as text.
    if [ -n "$to" ] && [[ "$to" > "$written_at" ]]; then break; fi
    sleep 5
  done
  [ -n "$to" ] && [[ "$to" > "$written_at" ]] || die "status.backup.restorableTo is ${to:-empty}, not past $written_at"
  [ "$(kubectl get sdb -n "$ns" "$db" -o jsonpath='{.status.backup.lastBackupId}')" = "$backup_id" ] ||
    die "status.backup.lastBackupId is not $backup_id"

  log "phase 7: deleting sdb/$db, then restoring it as sdb/$restored (latest point)"
  kill "$pf_pid" 2>/dev/null || true
  pf_pid=""
  kubectl delete sdb -n "$ns" "$db" --wait --timeout=5m
  {
    sed -e "s/^  name: $db\$/  name: $restored/" "$example"
    printf '  restore:\n    store: %s\n    s3: %s\n' "$store" "$s3_spec"
    printf '  backup:\n    store: %s\n    s3: %s\n' "s3://$bucket/e2e/$restored" "$s3_spec"
  } >"$work/restored.yaml"
  kubectl apply -n "$ns" -f "$work/restored.yaml"
  kubectl wait -n "$ns" --for=condition=Ready "sdb/$restored" --timeout="$ready_timeout" ||
    die "sdb/$restored not Ready; restore logs: $(kubectl logs -n "$ns" -l app.kubernetes.io/instance="$restored" -c restore --tail=20 2>&1 | tail -n 40)"
  kubectl logs -n "$ns" "$(server_pod Server0 | sed "s/^$db-/$restored-/")" -c restore --tail=5 || true
  router_service=$restored-router
  check_every_acked_key
  log "restore: every acknowledged key of sdb/$db is in sdb/$restored"
fi
