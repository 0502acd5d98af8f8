#!/usr/bin/env bash
# Tests of scripts/k8s-check.sh and of what the chart renders.
#
#   1. k8s-check passes on a copy of the deployment artifacts, and fails — in
#      the step that should catch it — on each planted bug: replicas "three",
#      a broken template, a misspelled values key, an unknown field, an unknown
#      kind, a writable root filesystem, a root Dockerfile, a duplicate YAML key,
#      a large number printed in scientific notation.
#   2. The rendered dev manifests hold every object the chart promises
#      (Deployments, Services with their ports, ConfigMap, Secret, ServiceAccount,
#      PodDisruptionBudgets, HPA, NetworkPolicies, the Kafka StatefulSet, the
#      topics hook Job, the helm test pod) and NOTES.txt the port-forward and
#      curl lines; a KEDA render holds the ScaledObject.
#   3. --set image.repository=R --set image.tag=T gives R/<service>:T.
#
# Ends with "test-k8s-check: N passed, N failed"; exits 1 if anything failed.
# Uses the same tool venv as k8s-check (${K8S_VENV:-<repo>/.venv-k8s}).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export K8S_VENV="${K8S_VENV:-${REPO}/.venv-k8s}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/test-k8s-check.XXXXXX")"
trap 'rm -rf "${WORK}"' EXIT

PASSES=0
FAILURES=()
ok() {
  printf 'ok   %s\n' "$1"
  PASSES=$((PASSES + 1))
}
not_ok() {
  printf 'FAIL %s\n' "$1"
  [[ -n "${2:-}" ]] && printf '%s\n' "$2" | tail -n 40 | sed 's/^/     | /'
  FAILURES+=("$1")
}

# A fresh copy of everything k8s-check reads, in ${WORK}/<name>; prints its path.
make_copy() {
  local dest="${WORK}/$1"
  mkdir -p "${dest}/scripts"
  cp -R "${REPO}/helm" "${REPO}/docker" "${dest}/"
  cp "${REPO}/values-dev.yaml" "${REPO}/.yamllint" "${REPO}/.hadolint.yaml" "${dest}/"
  if [[ -f "${REPO}/rust-toolchain.toml" ]]; then
    cp "${REPO}/rust-toolchain.toml" "${dest}/"
  fi
  cp "${REPO}/scripts/k8s-check.sh" "${REPO}/scripts/venv.sh" "${REPO}/scripts/requirements-k8s.txt" \
    "${dest}/scripts/"
  cp -R "${REPO}/scripts/k8s_check" "${dest}/scripts/"
  echo "${dest}"
}

# The k8s-check runs on the copies go on in the background, K8S_TEST_JOBS at a
# time (default 2); their verdicts are read once all have finished.
JOBS="${K8S_TEST_JOBS:-2}"
EXPECTED=()

# start_check NAME: k8s-check on copy NAME → ${WORK}/NAME.log and NAME.rc.
start_check() {
  local dir="${WORK}/$1"
  while (($(jobs -rp | wc -l) >= JOBS)); do
    wait -n || true
  done
  (
    rc=0
    K8S_OUT="${dir}/out" "${dir}/scripts/k8s-check.sh" > "${dir}.log" 2>&1 || rc=$?
    echo "${rc}" > "${dir}.rc"
  ) &
}

# expect_failure NAME STEP PATTERN: k8s-check on copy NAME (already mutated)
# must exit non-zero, report step STEP as failed, and print PATTERN somewhere.
expect_failure() {
  start_check "$1"
  EXPECTED+=("$1"$'\t'"$2"$'\t'"$3")
}

# verdict NAME STEP PATTERN: judges a finished run of expect_failure.
verdict() {
  local name="$1" step="$2" pattern="$3" log rc
  log="$(cat "${WORK}/${name}.log")"
  rc="$(cat "${WORK}/${name}.rc")"
  if ((rc == 0)); then
    not_ok "k8s-check fails on ${name}" "${log}"
  elif ! grep -q "^FAILED:.*${step}" <<< "${log}"; then
    not_ok "k8s-check fails on ${name} in step '${step}'" "${log}"
  elif ! grep -q -- "${pattern}" <<< "${log}"; then
    not_ok "k8s-check names the problem of ${name} (${pattern})" "${log}"
  else
    ok "k8s-check fails on ${name}: $(grep '^FAILED:' <<< "${log}" | sed 's/^FAILED: //')"
  fi
}

# mutated FILE PATTERN: the planted bug is really in FILE.
mutated() {
  if grep -q -- "$2" "$1"; then
    return 0
  fi
  not_ok "planting a bug: ${1#"${WORK}"/} has no '$2'"
  return 1
}

"${REPO}/scripts/k8s-check.sh" setup
PY="${K8S_VENV}/bin/python"

make_copy clean > /dev/null
start_check clean

# replicas: "three" — a string where Kubernetes wants an integer.
copy="$(make_copy replicas-three)"
sed -i 's/^  replicaCount: 2$/  replicaCount: "three"/' "${copy}/helm/values.yaml"
mutated "${copy}/helm/values.yaml" 'replicaCount: "three"' \
  && expect_failure replicas-three "helm lint default" "got string, want integer"

# A broken template: an unclosed action.
copy="$(make_copy broken-template)"
# shellcheck disable=SC2016  # template text, not shell expansions
sed -i 's/{{ \$svc.port }}$/{{ $svc.port }/' "${copy}/helm/templates/service.yaml"
mutated "${copy}/helm/templates/service.yaml" 'port }$' \
  && expect_failure broken-template "render default" "service.yaml"

# A misspelled values key (replicaCont) in the dev values.
copy="$(make_copy misspelled-key)"
sed -i '/^agentComms:/,/^[a-z]/ s/^  replicaCount:/  replicaCont:/' "${copy}/values-dev.yaml"
mutated "${copy}/values-dev.yaml" 'replicaCont:' \
  && expect_failure misspelled-key "helm lint dev" "replicaCont"

# A misspelled Kubernetes field, which Helm renders happily.
copy="$(make_copy unknown-field)"
sed -i 's/^  revisionHistoryLimit: 5$/  revisionHistoryLimt: 5/' "${copy}/helm/templates/deployment.yaml"
mutated "${copy}/helm/templates/deployment.yaml" 'revisionHistoryLimt' \
  && expect_failure unknown-field "kubernetes-validate default" "revisionHistoryLimt"

# A kind no schema describes.
copy="$(make_copy unknown-kind)"
cat > "${copy}/helm/templates/widget.yaml" <<'YAML'
apiVersion: example.com/v1
kind: Widget
metadata:
  name: {{ include "langgraph-kafka.fullname" . }}-widget
  namespace: {{ .Release.Namespace }}
spec:
  size: 1
YAML
expect_failure unknown-kind "kubernetes-validate default" "Widget"

# A writable root filesystem for the services.
copy="$(make_copy writable-rootfs)"
sed -i '/^securityContext:/,/^[a-z]/ s/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' \
  "${copy}/helm/values.yaml"
mutated "${copy}/helm/values.yaml" 'readOnlyRootFilesystem: false' \
  && expect_failure writable-rootfs "checkov" "CKV_K8S_22"

# A Dockerfile that runs as root from an untagged base image.
copy="$(make_copy root-dockerfile)"
# shellcheck disable=SC2016  # Dockerfile text, not shell expansions
sed -i 's/^USER 10001:10001$/USER root/; s/^FROM debian:\${DEBIAN_RELEASE}-slim AS runtime$/FROM debian AS runtime/' \
  "${copy}/docker/Dockerfile.agent-comms"
mutated "${copy}/docker/Dockerfile.agent-comms" '^FROM debian AS runtime$' \
  && expect_failure root-dockerfile "dockerfiles" "DL3006\|numeric non-root USER"

# A duplicate key in the dev values.
copy="$(make_copy duplicate-key)"
printf '\ncheckpointer:\n  enabled: true\n' >> "${copy}/values-dev.yaml"
expect_failure duplicate-key "yamllint" "duplication of key"

# A large number printed from a float (Helm reads values files as float64).
copy="$(make_copy float-format)"
# shellcheck disable=SC2016  # template text, not shell expansions
sed -i 's/{{ include "langgraph-kafka.scalar" \$topics.retentionMs }}/{{ $topics.retentionMs }}/' \
  "${copy}/helm/templates/topics-job.yaml"
mutated "${copy}/helm/templates/topics-job.yaml" 'events" . }}:{{ .topics.retentionMs }}' \
  && expect_failure float-format "render default" "scientific notation"

echo "== k8s-check on an unmodified copy, then on planted bugs (${JOBS} at a time)"
wait
if [[ "$(cat "${WORK}/clean.rc")" == 0 ]] && grep -q '^k8s-check: [0-9]* passed, 0 failed$' "${WORK}/clean.log"; then
  ok "k8s-check passes on the unmodified chart ($(tail -n 1 "${WORK}/clean.log"))"
else
  not_ok "k8s-check passes on the unmodified chart" "$(cat "${WORK}/clean.log")"
fi
for expected in "${EXPECTED[@]}"; do
  IFS=$'\t' read -r name step pattern <<< "${expected}"
  verdict "${name}" "${step}" "${pattern}"
done

echo "== rendered dev manifests"
DEV_OUT="${WORK}/render-dev"
"${REPO}/scripts/k8s-check.sh" render --values "${REPO}/values-dev.yaml" --out "${DEV_OUT}" > /dev/null
if "${PY}" - "${DEV_OUT}" <<'PY'; then
import sys, yaml
out = sys.argv[1]
objs = [o for o in yaml.safe_load_all(open(f"{out}/manifests.yaml")) if o]
notes = open(f"{out}/NOTES.txt").read()
by_kind = {}
for o in objs:
    by_kind.setdefault(o["kind"], []).append(o)
names = lambda kind: sorted(o["metadata"]["name"] for o in by_kind.get(kind, []))
problems = []
def expect(cond, what):
    print(("  ok   " if cond else "  MISSING ") + what)
    if not cond:
        problems.append(what)

services = {"langgraph-kafka-task-generator": 8001, "langgraph-kafka-agent-comms": 8000,
            "langgraph-kafka-task-solver": 8002, "kafka-service": 9092}
svc_ports = {o["metadata"]["name"]: [p["port"] for p in o["spec"]["ports"]] for o in by_kind.get("Service", [])}
for name, port in services.items():
    expect(port in svc_ports.get(name, []), f"Service {name} port {port}")
for name in ("task-generator", "agent-comms", "task-solver"):
    dep = next((o for o in by_kind.get("Deployment", []) if o["metadata"]["name"] == f"langgraph-kafka-{name}"), None)
    expect(dep is not None, f"Deployment langgraph-kafka-{name}")
    if dep:
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        expect("livenessProbe" in c and "readinessProbe" in c, f"{name}: liveness and readiness probes")
        expect(c.get("resources", {}).get("limits") and c["resources"].get("requests"), f"{name}: resources")
        sc = c.get("securityContext", {})
        expect(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
               and sc.get("capabilities", {}).get("drop") == ["ALL"]
               and pod.get("securityContext", {}).get("runAsNonRoot") is True,
               f"{name}: non-root, read-only root filesystem, all capabilities dropped")
for kind in ("ConfigMap", "Secret", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"):
    expect(by_kind.get(kind), f"{kind}: {', '.join(names(kind))}")
hpa = by_kind.get("HorizontalPodAutoscaler", [])
expect(any(h["spec"]["scaleTargetRef"]["name"] == "langgraph-kafka-task-solver" for h in hpa),
       "HorizontalPodAutoscaler for the task-solver")
sts = by_kind.get("StatefulSet", [])
expect(any(s["spec"]["template"]["spec"]["containers"][0]["image"].startswith("apache/kafka:") and s["spec"]["replicas"] == 1
           for s in sts), "Kafka StatefulSet (apache/kafka, 1 broker in dev)")
expect(all("volumeClaimTemplates" not in s["spec"] for s in sts), "dev Kafka without persistence")
jobs = by_kind.get("Job", [])
expect(any("post-install" in j["metadata"].get("annotations", {}).get("helm.sh/hook", "") for j in jobs),
       "topic-creation Job (post-install hook)")
expect(any("--partitions" in j["spec"]["template"]["spec"]["containers"][0]["args"][0] for j in jobs),
       "topic-creation Job runs kafka-topics.sh --partitions")
job_env = {e["name"]: e.get("value") for j in jobs for e in j["spec"]["template"]["spec"]["containers"][0]["env"]}
expect(job_env.get("PARTITIONS") == "3" and job_env.get("REPLICATION_FACTOR") == "1"
       and "dev-langgraph-agent-events:86400000" in job_env.get("TOPICS", ""),
       "topic-creation Job: partitions 3, replication 1, retention from values")
pods = by_kind.get("Pod", [])
expect(any(p["metadata"].get("annotations", {}).get("helm.sh/hook") == "test" for p in pods), "helm test pod")
cm = by_kind["ConfigMap"][0]["data"]
expect(cm.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka-service:9092", "KAFKA_BOOTSTRAP_SERVERS=kafka-service:9092")
expect(cm.get("DISABLECHECKPOINTER") == "true", "dev: checkpointer disabled")
expect(cm.get("KAFKA_SECURITY_PROTOCOL") == "PLAINTEXT", "dev: SASL off")
expect("port-forward svc/langgraph-kafka-task-generator 8001:8001" in notes, "NOTES.txt: port-forward line")
expect("curl -X POST localhost:8001/generate-task" in notes, "NOTES.txt: curl line")
sys.exit(1 if problems else 0)
PY
  ok "the rendered dev manifests hold every promised object"
else
  not_ok "the rendered dev manifests hold every promised object"
fi

echo "== rendered production defaults"
PROD_OUT="${WORK}/render-default"
"${REPO}/scripts/k8s-check.sh" render --out "${PROD_OUT}" > /dev/null
if "${PY}" - "${PROD_OUT}" <<'PY'; then
import sys, yaml
objs = [o for o in yaml.safe_load_all(open(f"{sys.argv[1]}/manifests.yaml")) if o]
sts = next(o for o in objs if o["kind"] == "StatefulSet")
cm = next(o for o in objs if o["kind"] == "ConfigMap")["data"]
checks = {
    "3 Kafka brokers": sts["spec"]["replicas"] == 3,
    "Kafka persistence (volumeClaimTemplates)": bool(sts["spec"].get("volumeClaimTemplates")),
    "SASL on (KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT)": cm["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT",
    "checkpointer on": cm["DISABLECHECKPOINTER"] == "false",
    "replication factor 3": cm["KAFKA_REPLICATION_FACTOR"] == "3",
}
for what, good in checks.items():
    print(("  ok   " if good else "  WRONG ") + what)
sys.exit(0 if all(checks.values()) else 1)
PY
  ok "the production defaults: 3 brokers with persistence, SASL, checkpointer"
else
  not_ok "the production defaults: 3 brokers with persistence, SASL, checkpointer"
fi

KEDA_OUT="${WORK}/render-keda"
"${REPO}/scripts/k8s-check.sh" render --values "${REPO}/values-dev.yaml" --set taskSolver.keda.enabled=true \
  --out "${KEDA_OUT}" > /dev/null
if grep -q '^kind: ScaledObject$' "${KEDA_OUT}/crds.yaml" 2> /dev/null \
  && ! grep -q '^kind: HorizontalPodAutoscaler$' "${KEDA_OUT}/manifests.yaml"; then
  ok "taskSolver.keda.enabled renders a KEDA ScaledObject in place of the HPA"
else
  not_ok "taskSolver.keda.enabled renders a KEDA ScaledObject in place of the HPA"
fi

echo "== image names from --set image.repository / image.tag"
images="$("${REPO}/scripts/k8s-check.sh" render --values "${REPO}/values-dev.yaml" \
  --set image.repository=R --set image.tag=T | "${PY}" -c '
import sys, yaml
for o in yaml.safe_load_all(sys.stdin):
    if o and o["kind"] == "Deployment":
        for c in o["spec"]["template"]["spec"]["containers"]:
            print(c["image"])
' | sort | tr '\n' ' ')"
if [[ "${images}" == "R/agent-comms:T R/task-generator:T R/task-solver:T " ]]; then
  ok "--set image.repository=R --set image.tag=T gives ${images}"
else
  not_ok "--set image.repository=R --set image.tag=T gives R/<service>:T (got: ${images})"
fi

echo
if ((${#FAILURES[@]})); then
  printf 'failed: %s\n' "${FAILURES[@]}"
fi
echo "test-k8s-check: ${PASSES} passed, ${#FAILURES[@]} failed"
((${#FAILURES[@]} == 0))
