"""k8s_check.crds: the KEDA objects of a render against their CRDs and the release."""

import copy

import pytest
import yaml
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


def check(tmp_path, capsys, *crds):
    """check_crds on a render holding DEPLOYMENT and ``crds``: (exit code, printed lines)."""
    (tmp_path / "manifests.yaml").write_text(yaml.safe_dump(DEPLOYMENT), encoding="utf-8")
    (tmp_path / "crds.yaml").write_text(yaml.safe_dump_all(crds), encoding="utf-8")
    rc = check_crds([str(tmp_path)])
    lines = capsys.readouterr().out.splitlines()
    prefix = f"{tmp_path / 'crds.yaml'}: "
    return rc, [line.replace(prefix, "") for line in lines]


def broken(**changes):
    """SCALED_OBJECT with ``changes`` applied: keys joined by ``__`` (list indexes as
    digits) → the new value, or None to remove the field.
    """
    obj = copy.deepcopy(SCALED_OBJECT)
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
