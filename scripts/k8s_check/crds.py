"""The KEDA objects of a render against structural schemas of their CRDs.

kubernetes-validate knows only the built-in kinds, so the objects ``render`` put in
``crds.yaml`` (``keda.sh/v1alpha1``, KEDA 2.x) are checked here: the fields of the CRDs'
specs, unknown fields rejected, trigger metadata values strings; then that a
ScaledObject scales a Deployment of the release, names a TriggerAuthentication that is
rendered, and gives a kafka trigger the fields KEDA needs.
"""

import os

import jsonschema
import yaml

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": _NAME}}

_SCALE_TARGET_REF = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "name": _NAME,
        "envSourceContainerName": {"type": "string"},
    },
}
_AUTHENTICATION_REF = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": _NAME,
        "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
    },
}
_TRIGGER = {
    "type": "object",
    "required": ["type", "metadata"],
    "additionalProperties": False,
    "properties": {
        "type": {"type": "string"},
        "name": {"type": "string"},
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
        "authenticationRef": _AUTHENTICATION_REF,
    },
}
_SECRET_TARGET_REF = {
    "type": "object",
    "required": ["parameter", "name", "key"],
    "additionalProperties": False,
    "properties": {
        "parameter": {"type": "string"},
        "name": _NAME,
        "key": {"type": "string", "minLength": 1},
    },
}

KEDA_SCHEMAS = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "ScaledObject"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["scaleTargetRef", "triggers"],
                "additionalProperties": False,
                "properties": {
                    "scaleTargetRef": _SCALE_TARGET_REF,
                    "pollingInterval": {"type": "integer", "minimum": 1},
                    "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                    "cooldownPeriod": {"type": "integer", "minimum": 0},
                    "idleReplicaCount": {"type": "integer", "minimum": 0},
                    "minReplicaCount": {"type": "integer", "minimum": 0},
                    "maxReplicaCount": {"type": "integer", "minimum": 1},
                    "fallback": {"type": "object"},
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "horizontalPodAutoscalerConfig": {"type": "object"},
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "scalingModifiers": {"type": "object"},
                        },
                    },
                    "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "keda.sh/v1alpha1"},
            "kind": {"const": "TriggerAuthentication"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "secretTargetRef": {"type": "array", "items": _SECRET_TARGET_REF},
                    "configMapTargetRef": {"type": "array"},
                    "env": {"type": "array"},
                    "podIdentity": {"type": "object"},
                    "hashiCorpVault": {"type": "object"},
                    "azureKeyVault": {"type": "object"},
                    "awsSecretManager": {"type": "object"},
                    "gcpSecretManager": {"type": "object"},
                },
            },
        },
    },
}
KAFKA_TRIGGER_REQUIRED = ("bootstrapServers", "consumerGroup", "topic", "lagThreshold")


def schema_errors(obj):
    """What is wrong with ``obj`` against its kind's schema, as "path: message" lines.

    ``None`` when no schema describes the object's apiVersion and kind.
    """
    schema = KEDA_SCHEMAS.get(obj.get("kind"))
    if schema is None or not obj.get("apiVersion", "").startswith("keda.sh/v1alpha1"):
        return None
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    return [f"{'.'.join(str(p) for p in error.path)}: {error.message}" for error in errors]


def reference_errors(obj, deployments, auths):
    """What a schema-valid ScaledObject gets wrong about the rest of the release.

    ``deployments`` and ``auths`` are the names of the rendered Deployments and
    TriggerAuthentications.
    """
    if obj["kind"] != "ScaledObject":
        return []
    problems = []
    target = obj["spec"]["scaleTargetRef"]["name"]
    if target not in deployments:
        problems.append(f"scaleTargetRef {target} is not a Deployment of the release")
    for trigger in obj["spec"]["triggers"]:
        ref = (trigger.get("authenticationRef") or {}).get("name")
        if ref and ref not in auths:
            problems.append(f"authenticationRef {ref} is not rendered")
        if trigger["type"] == "kafka":
            missing = [k for k in KAFKA_TRIGGER_REQUIRED if k not in trigger["metadata"]]
            if missing:
                problems.append(f"kafka trigger lacks {', '.join(missing)}")
    return problems


def check_crds(dirs):
    """Checks ``<dir>/crds.yaml`` against ``<dir>/manifests.yaml`` for each render directory.

    A directory without crds.yaml is skipped. Prints an ERROR line per problem and an
    INFO line per schema-valid object; 1 if anything was wrong.
    """
    failures = 0
    for directory in dirs:
        crd_path = os.path.join(directory, "crds.yaml")
        if not os.path.exists(crd_path):
            continue
        with open(os.path.join(directory, "manifests.yaml"), encoding="utf-8") as handle:
            others = [o for o in yaml.safe_load_all(handle) if o]
        deployments = {o["metadata"]["name"] for o in others if o["kind"] == "Deployment"}
        with open(crd_path, encoding="utf-8") as handle:
            objects = [o for o in yaml.safe_load_all(handle) if o]
        auths = {o["metadata"]["name"] for o in objects if o.get("kind") == "TriggerAuthentication"}
        for obj in objects:
            label = f"{crd_path}: {obj.get('kind')}/{(obj.get('metadata') or {}).get('name')}"
            errors = schema_errors(obj)
            if errors is None:
                print(f"ERROR {label}: no schema for {obj.get('apiVersion')} {obj.get('kind')}")
                failures += 1
                continue
            for error in errors:
                print(f"ERROR {label}: {error}")
            failures += len(errors)
            if errors:
                continue
            for problem in reference_errors(obj, deployments, auths):
                print(f"ERROR {label}: {problem}")
                failures += 1
            print(f"INFO {label}: valid")
    return 1 if failures else 0
