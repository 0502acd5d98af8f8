#!/usr/bin/env bash
# Tests of scripts/k8s-check.sh and of what the chart renders: pytest on scripts/tests/
# (make test and make test-k8s-check run this).
#
#   1. k8s-check passes on a copy of the deployment artifacts, and fails — in
#      the step that should catch it — on each planted bug: replicas "three",
#      a broken template, a misspelled values key, an unknown field, an unknown
#      kind, a writable root filesystem, a root Dockerfile, a duplicate YAML key,
#      a large number printed in scientific notation, a ServiceMonitor on a port
#      the Services lack, a dashboard reading an unknown metric (test_planted_bugs.py).
#   2. The rendered dev manifests hold every object the chart promises
#      (Deployments, Services with their ports, ConfigMap, Secret, ServiceAccount,
#      PodDisruptionBudgets, HPA, NetworkPolicies, the Kafka StatefulSet, the
#      topics hook Job, the helm test pod) and NOTES.txt the port-forward and
#      curl lines; the production defaults their brokers, SASL and checkpointer; a
#      KEDA render holds the ScaledObject; --set image.repository=R --set
#      image.tag=T gives R/<service>:T; the pods' scrape annotations, the scraper's
#      NetworkPolicy rule, the ServiceMonitor and the dashboard's ConfigMap
#      (test_rendered.py).
#   3. The Grafana dashboard: every metric of the services drawn, no other
#      (test_dashboard.py).
#   4. The Python of k8s-check (scripts/k8s_check/): values, render, the custom
#      resources' schemas (test_k8s_check_*.py).
#
#   scripts/test-k8s-check.sh [PYTEST ARGS]   e.g. -k planted, -x, -v
#
# pytest's closing line says how many passed and failed; exits non-zero if anything
# failed. Runs in the tool venv of k8s-check (${K8S_VENV:-<repo>/.venv-k8s}), which
# it creates first; K8S_TEST_JOBS (default 2) k8s-check runs on copies at a time.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export K8S_VENV="${K8S_VENV:-${REPO}/.venv-k8s}"

"${REPO}/scripts/k8s-check.sh" setup
cd "${REPO}/scripts"
exec "${K8S_VENV}/bin/python" -m pytest "$@"
