"""k8s-check passes on a copy of the deployment artifacts, and fails — in the step that
should catch it, naming the problem — on each bug planted in a copy.

The runs on the copies go on K8S_TEST_JOBS at a time (default 2) from the first test on;
each test waits for its own.
"""

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = int(os.environ.get("K8S_TEST_JOBS", "2"))

WIDGET = """\
apiVersion: example.com/v1
kind: Widget
metadata:
  name: {{ include "langgraph-kafka.fullname" . }}-widget
  namespace: {{ .Release.Namespace }}
spec:
  size: 1
"""


@dataclass
class Edit:
    """A change to one file of a copy: ``pattern`` → ``replacement`` (first match of each
    line, as sed's ``s`` does), only between a line matching ``section[0]`` and the next
    matching ``section[1]`` when given (sed's ``/a/,/b/``); or ``append`` at the end.
    """

    path: str
    pattern: str = ""
    replacement: str = ""
    section: tuple = ()
    append: str = ""

    def apply(self, copy):
        path = copy / self.path
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        if self.append:
            path.write_text(text + self.append, encoding="utf-8")
            return
        lines, inside = text.splitlines(keepends=True), False
        for i, line in enumerate(lines):
            if self.section and not inside:
                inside = re.search(self.section[0], line) is not None
                if not inside:
                    continue
            elif self.section and re.search(self.section[1], line):
                inside = False
            body = line.rstrip("\n")
            lines[i] = re.sub(self.pattern, self.replacement, body, count=1) + line[len(body) :]
        path.write_text("".join(lines), encoding="utf-8")


@dataclass
class Bug:
    """A bug planted in a copy; k8s-check must fail in ``step`` and print ``names``.

    ``planted`` (file, regex) proves the edits really changed the copy.
    """

    name: str
    step: str
    names: str
    edits: list
    planted: tuple = field(default=())


BUGS = [
    Bug(
        "replicas-three",  # a string where Kubernetes wants an integer
        "helm lint default",
        "got string, want integer",
        [Edit("helm/values.yaml", r"^  replicaCount: 2$", '  replicaCount: "three"')],
        ("helm/values.yaml", r'replicaCount: "three"'),
    ),
    Bug(
        "broken-template",  # an unclosed action
        "render default",
        r"service\.yaml",
        [Edit("helm/templates/service.yaml", r"\{\{ \$svc\.port \}\}$", "{{ $svc.port }")],
        ("helm/templates/service.yaml", r"port }$"),
    ),
    Bug(
        "misspelled-key",  # replicaCont in the dev values
        "helm lint dev",
        "replicaCont",
        [
            Edit(
                "values-dev.yaml",
                r"^  replicaCount:",
                "  replicaCont:",
                section=(r"^agentComms:", r"^[a-z]"),
            )
        ],
        ("values-dev.yaml", r"replicaCont:"),
    ),
    Bug(
        "unknown-field",  # a misspelled Kubernetes field, which Helm renders happily
        "kubernetes-validate default",
        "revisionHistoryLimt",
        [
            Edit(
                "helm/templates/deployment.yaml",
                r"^  revisionHistoryLimit: 5$",
                "  revisionHistoryLimt: 5",
            )
        ],
        ("helm/templates/deployment.yaml", r"revisionHistoryLimt"),
    ),
    Bug(
        "unknown-kind",  # a kind no schema describes
        "kubernetes-validate default",
        "Widget",
        [Edit("helm/templates/widget.yaml", append=WIDGET)],
    ),
    Bug(
        "writable-rootfs",  # a writable root filesystem for the services
        "checkov",
        "CKV_K8S_22",
        [
            Edit(
                "helm/values.yaml",
                r"readOnlyRootFilesystem: true",
                "readOnlyRootFilesystem: false",
                section=(r"^securityContext:", r"^[a-z]"),
            )
        ],
        ("helm/values.yaml", r"readOnlyRootFilesystem: false"),
    ),
    Bug(
        "root-dockerfile",  # runs as root from an untagged base image
        "dockerfiles",
        r"DL3006|numeric non-root USER",
        [
            Edit("docker/Dockerfile.agent-comms", r"^USER 10001:10001$", "USER root"),
            Edit(
                "docker/Dockerfile.agent-comms",
                r"^FROM debian:\$\{DEBIAN_RELEASE\}-slim AS runtime$",
                "FROM debian AS runtime",
            ),
        ],
        ("docker/Dockerfile.agent-comms", r"^FROM debian AS runtime$"),
    ),
    Bug(
        "duplicate-key",  # a duplicate key in the dev values
        "yamllint",
        "duplication of key",
        [Edit("values-dev.yaml", append="\ncheckpointer:\n  enabled: true\n")],
    ),
    Bug(
        "postgres-store-without-url",  # a shared results view with no database to hold it
        "render default",
        r"resultsStore\.backend=postgres needs a DATABASE_URL",
        [
            Edit(
                "helm/values.yaml",
                r"^  backend: sqlite$",
                "  backend: postgres",
                section=(r"^resultsStore:", r"^[a-z]"),
            )
        ],
        ("helm/values.yaml", r"^  backend: postgres$"),
    ),
    Bug(
        "sqlite-persistence-two-replicas",  # one ReadWriteOnce volume for two task-generators
        "render default",
        r"resultsStore\.sqlite\.persistence\.enabled needs taskGenerator\.replicaCount: 1, not 2",
        [
            Edit(
                "helm/values.yaml",
                r"^      enabled: false$",
                "      enabled: true",
                section=(r"^resultsStore:", r"^[a-z]"),
            )
        ],
        (
            "helm/values.yaml",
            r"^    persistence:\n      # --[^\n]*\n(      #[^\n]*\n)*      enabled: true$",
        ),
    ),
    Bug(
        "float-format",  # a large number printed from a float (values files are float64)
        "render default",
        "scientific notation",
        [
            Edit(
                "helm/templates/topics-job.yaml",
                r'\{\{ include "langgraph-kafka\.scalar" \$topics\.retentionMs \}\}',
                "{{ $topics.retentionMs }}",
            )
        ],
        ("helm/templates/topics-job.yaml", r'events" \. }}:\{\{ \$topics\.retentionMs }}'),
    ),
    Bug(
        "service-monitor-port",  # a ServiceMonitor scraping a port the Services do not have
        "CRD objects",
        "endpoint port metrics is not a port of Service langgraph-kafka-",
        [Edit("helm/templates/servicemonitor.yaml", r"^    - port: http$", "    - port: metrics")],
        ("helm/templates/servicemonitor.yaml", r"^    - port: metrics$"),
    ),
    Bug(
        "dashboard-unknown-metric",  # a panel reading a metric no service exposes
        "dashboard",
        "unknown metric tasks_solve_total",
        [
            Edit(
                "helm/dashboards/langgraph-kafka.json",
                r"tasks_solved_total\{",
                "tasks_solve_total{",
            )
        ],
        ("helm/dashboards/langgraph-kafka.json", r"tasks_solve_total\{"),
    ),
]


def make_copy(dest):
    """A fresh copy of everything k8s-check reads, in ``dest``."""
    (dest / "scripts").mkdir(parents=True)
    for directory in ("helm", "docker"):
        shutil.copytree(REPO / directory, dest / directory)
    for name in ("values-dev.yaml", ".yamllint", ".hadolint.yaml", "rust-toolchain.toml"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, dest / name)
    for name in ("k8s-check.sh", "venv.sh", "requirements-k8s.txt"):
        shutil.copy(REPO / "scripts" / name, dest / "scripts" / name)
    shutil.copytree(
        REPO / "scripts" / "k8s_check",
        dest / "scripts" / "k8s_check",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return dest


@pytest.fixture(scope="session")
def runs(tmp_path_factory, k8s_check):
    """Name ("clean" or a bug's) → a future of k8s-check's (exit code, output) on that
    copy, or the reason the bug could not be planted.
    """
    work = tmp_path_factory.mktemp("copies")
    pool = ThreadPoolExecutor(max_workers=JOBS)
    started = {}
    for bug in [Bug("clean", "", "", [])] + BUGS:
        copy = make_copy(work / bug.name)
        for edit in bug.edits:
            edit.apply(copy)
        if bug.planted:
            path, pattern = bug.planted
            if not re.search(pattern, (copy / path).read_text(encoding="utf-8"), re.M):
                started[bug.name] = f"planting a bug: {bug.name}/{path} has no '{pattern}'"
                continue
        script = copy / "scripts" / "k8s-check.sh"
        started[bug.name] = pool.submit(
            k8s_check, script=script, env={"K8S_OUT": str(copy / "out")}
        )
    yield started
    pool.shutdown(wait=True, cancel_futures=True)


def last_lines(log, count=40):
    return "\n".join(log.splitlines()[-count:])


def test_k8s_check_passes_on_the_unmodified_chart(runs):
    rc, log = runs["clean"].result()
    assert rc == 0, last_lines(log)
    assert re.search(r"^k8s-check: [0-9]+ passed, 0 failed$", log, re.M), last_lines(log)


@pytest.mark.parametrize("bug", BUGS, ids=[bug.name for bug in BUGS])
def test_k8s_check_fails_on_a_planted_bug_in_the_right_step_and_names_it(bug, runs):
    run = runs[bug.name]
    assert not isinstance(run, str), run
    rc, log = run.result()
    assert rc != 0, f"k8s-check passed on {bug.name}:\n{last_lines(log)}"
    failed = re.search(r"^FAILED: (.*)$", log, re.M)
    assert failed and bug.step in failed.group(1), (
        f"k8s-check did not fail on {bug.name} in step '{bug.step}':\n{last_lines(log)}"
    )
    assert re.search(bug.names, log), (
        f"k8s-check did not name the problem of {bug.name} ({bug.names}):\n{last_lines(log)}"
    )
