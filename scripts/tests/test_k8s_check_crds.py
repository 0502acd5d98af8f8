"""k8s_check.crds: the custom resources of a render (KEDA's, the ServiceMonitor) against
their CRDs and the release.
"""

import copy

import pytest
import yaml
from k8s_check import crds
from k8s_check.crds import check_crds

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "langgraph-kafka-task-solver"},
}
AUTH = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "TriggerAuthentication",
    "metadata": {"name": "langgraph-kafka-kafka"},
    "spec": {"secretTargetRef": [{"parameter": "password", "name": "kafka", "key": "pw"}]},
}
SCALED_OBJECT = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {"name": "langgraph-kafka-task-solver"},
    "spec": {
        "scaleTargetRef": {"name": "langgraph-kafka-task-solver"},
        "minReplicaCount": 1,
        "maxReplicaCount": 10,
        "triggers": [
            {
                "type": "kafka",
                "metadata": {
                    "bootstrapServers": "kafka:9092",
                    "consumerGroup": "task-solver",
                    "topic": "events",
                    "lagThreshold": "20",
                },
                "authenticationRef": {"name": "langgraph-kafka-kafka"},
            }
        ],
    },
}


def service(component, ports=("http",)):
    """A Service of the release for ``component``, with ports named ``ports``."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": f"langgraph-kafka-{component}",
            "labels": {
                "app.kubernetes.io/name": "langgraph-kafka",
                "app.kubernetes.io/instance": "langgraph-kafka",
                "app.kubernetes.io/component": component,
            },
        },
        "spec": {"ports": [{"name": n, "port": 8000 + i} for i, n in enumerate(ports)]},
    }


SERVICES = [service("task-generator"), service("task-solver"), service("kafka", ("kafka",))]
SERVICE_MONITOR = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "langgraph-kafka", "labels": {"release": "kube-prometheus-stack"}},
    "spec": {
        "selector": {
            "matchLabels": {"app.kubernetes.io/instance": "langgraph-kafka"},
            "matchExpressions": [
                {
                    "key": "app.kubernetes.io/component",
                    "operator": "In",
                    "values": ["task-generator", "task-solver"],
                }
            ],
        },
        "endpoints": [
            {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
        ],
    },
}


def check(tmp_path, capsys, *crds, others=()):
    """check_crds on a render holding DEPLOYMENT, ``others`` and ``crds``: (exit code,
    printed lines)."""
    (tmp_path / "manifests.yaml").write_text(
        yaml.safe_dump_all([DEPLOYMENT, *others]), encoding="utf-8"
    )
    (tmp_path / "crds.yaml").write_text(yaml.safe_dump_all(crds), encoding="utf-8")
    rc = check_crds([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    prefix = f"{tmp_path / 'crds.yaml'}: "
    return rc, [line.replace(prefix, "") for line in lines]


def broken(base=SCALED_OBJECT, **changes):
    """``base`` (SCALED_OBJECT) with ``changes`` applied: keys joined by ``__`` (list
    indexes as digits) → the new value, or None to remove the field.
    """
    obj = copy.deepcopy(base)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = obj
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return obj


def test_the_chart_s_scaled_object_and_trigger_authentication_are_valid(tmp_path, capsys):
    assert check(tmp_path, capsys, AUTH, SCALED_OBJECT) == (
        0,
        [
            "INFO TriggerAuthentication/langgraph-kafka-kafka: valid",
            "INFO ScaledObject/langgraph-kafka-task-solver: valid",
        ],
    )


def test_a_render_without_crds_has_nothing_to_check(tmp_path, capsys):
    assert check_crds([str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        (
            broken(spec__pollingIntervall=30),
            "spec: Additional properties are not allowed ('pollingIntervall' was unexpected)",
        ),
        (broken(spec__triggers__0__metadata__lagThreshold=20), "20 is not of type 'string'"),
        (broken(spec__minReplicaCount=-1), "spec.minReplicaCount: -1 is less than the minimum"),
        (broken(spec__triggers=[]), "spec.triggers: [] should be non-empty"),
    ],
    ids=["unknown-field", "number-in-trigger-metadata", "negative-replicas", "no-trigger"],
)
def test_a_scaled_object_against_the_crd_s_schema_fails_naming_the_field(
    tmp_path, capsys, obj, error
):
    rc, lines = check(tmp_path, capsys, AUTH, obj)
    assert rc == 1
    assert any(line.startswith("ERROR ScaledObject/") and error in line for line in lines), lines


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        (
            broken(spec__scaleTargetRef={"name": "elsewhere"}),
            "scaleTargetRef elsewhere is not a Deployment of the release",
        ),
        (
            broken(spec__triggers__0__authenticationRef={"name": "nowhere"}),
            "authenticationRef nowhere is not rendered",
        ),
        (
            broken(spec__triggers__0__metadata__topic=None),
            "kafka trigger lacks topic",
        ),
    ],
    ids=["target", "authentication", "kafka-trigger"],
)
def test_a_scaled_object_must_fit_the_rest_of_the_release(tmp_path, capsys, obj, error):
    rc, lines = check(tmp_path, capsys, AUTH, obj)
    assert rc == 1
    assert f"ERROR ScaledObject/langgraph-kafka-task-solver: {error}" in lines


def test_a_kind_without_a_schema_fails(tmp_path, capsys):
    other = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledJob", "metadata": {"name": "j"}}
    assert check(tmp_path, capsys, other) == (
        1,
        ["ERROR ScaledJob/j: no schema for keda.sh/v1alpha1 ScaledJob"],
    )


def test_the_chart_s_service_monitor_is_valid(tmp_path, capsys):
    assert check(tmp_path, capsys, SERVICE_MONITOR, others=SERVICES) == (
        0,
        ["INFO ServiceMonitor/langgraph-kafka: valid"],
    )


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        (
            broken(SERVICE_MONITOR, spec__endpoints__0__intervall="30s"),
            "Additional properties are not allowed ('intervall' was unexpected)",
        ),
        (broken(SERVICE_MONITOR, spec__endpoints__0__interval="30"), "'30' does not match"),
        (broken(SERVICE_MONITOR, spec__endpoints=[]), "spec.endpoints: [] should be non-empty"),
        (
            broken(SERVICE_MONITOR, spec__selector__matchExpressions__0__operator="Is"),
            "'Is' is not one of",
        ),
    ],
    ids=["unknown-field", "duration-without-unit", "no-endpoint", "bad-operator"],
)
def test_a_service_monitor_against_the_crd_s_schema_fails_naming_the_field(
    tmp_path, capsys, obj, error
):
    rc, lines = check(tmp_path, capsys, obj, others=SERVICES)
    assert rc == 1
    assert any(line.startswith("ERROR ServiceMonitor/") and error in line for line in lines), lines


@pytest.mark.parametrize(
    ("obj", "error"),
    [
        (
            broken(SERVICE_MONITOR, spec__selector={"matchLabels": {"app": "other"}}),
            "selector selects no Service of the release",
        ),
        (
            broken(
                SERVICE_MONITOR,
                spec__selector__matchExpressions__0__values=["task-solver", "kafka"],
            ),
            "endpoint port http is not a port of Service langgraph-kafka-kafka",
        ),
        (
            broken(SERVICE_MONITOR, spec__endpoints__0__port="metrics"),
            "endpoint port metrics is not a port of Service langgraph-kafka-task-generator",
        ),
        (
            broken(SERVICE_MONITOR, spec__endpoints__0__scrapeTimeout="1m"),
            "scrapeTimeout 1m is longer than interval 30s",
        ),
    ],
    ids=["selects-nothing", "selects-kafka", "unknown-port", "timeout-over-interval"],
)
def test_a_service_monitor_must_fit_the_rest_of_the_release(tmp_path, capsys, obj, error):
    rc, lines = check(tmp_path, capsys, obj, others=SERVICES)
    assert rc == 1
    assert f"ERROR ServiceMonitor/langgraph-kafka: {error}" in lines, lines


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("30s", 30), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1d", 86400), ("0", 0)],
)
def test_prometheus_durations_are_read_in_seconds(duration, seconds):
    assert crds.seconds(duration) == seconds


def test_a_label_selector_applies_match_labels_and_every_operator():
    labels = {"a": "1", "b": "2"}
    assert crds.selects({"matchLabels": {"a": "1"}}, labels)
    assert not crds.selects({"matchLabels": {"a": "2"}}, labels)
    for expression, expected in [
        ({"key": "b", "operator": "In", "values": ["2", "3"]}, True),
        ({"key": "b", "operator": "In", "values": ["3"]}, False),
        ({"key": "b", "operator": "NotIn", "values": ["3"]}, True),
        ({"key": "c", "operator": "NotIn", "values": ["3"]}, True),
        ({"key": "b", "operator": "NotIn", "values": ["2"]}, False),
        ({"key": "a", "operator": "Exists"}, True),
        ({"key": "c", "operator": "Exists"}, False),
        ({"key": "c", "operator": "DoesNotExist"}, True),
        ({"key": "a", "operator": "DoesNotExist"}, False),
    ]:
        assert crds.selects({"matchExpressions": [expression]}, labels) is expected, expression


def test_a_kind_of_another_group_without_a_schema_fails(tmp_path, capsys):
    other = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "p"},
    }
    assert check(tmp_path, capsys, other) == (
        1,
        ["ERROR PodMonitor/p: no schema for monitoring.coreos.com/v1 PodMonitor"],
    )
