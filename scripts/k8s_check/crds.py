"""The custom resources of a render against structural schemas of their CRDs.

kubernetes-validate knows only the built-in kinds, so the objects ``render`` put in
``crds.yaml`` are checked here, each kind by name (an allowlist: a kind without a schema
fails): KEDA's ``ScaledObject`` and ``TriggerAuthentication`` (``keda.sh/v1alpha1``,
KEDA 2.x) and the Prometheus Operator's ``ServiceMonitor`` (``monitoring.coreos.com/v1``).
First the fields of the CRDs' specs, unknown fields rejected, trigger metadata values
strings, durations in Prometheus' form; then that the objects fit the rest of the
release: a ScaledObject scales a Deployment of the release, names a
TriggerAuthentication that is rendered, and gives a kafka trigger the fields KEDA needs;
a ServiceMonitor selects Services of the release that have the ports it scrapes, with
a scrape timeout no longer than its interval.
"""

import os
import re

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

# A Prometheus duration, as the Prometheus Operator's CRDs give it.
_DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?"
    r"(([0-9]+)ms)?)$",
}
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "additionalProperties": False,
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string", "minLength": 1},
        "targetPort": {"type": ["string", "integer"]},
        "path": {"type": "string", "pattern": "^/"},
        "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
        "params": {"type": "object"},
        "interval": _DURATION,
        "scrapeTimeout": _DURATION,
        "honorLabels": {"type": "boolean"},
        "honorTimestamps": {"type": "boolean"},
        "trackTimestampsStaleness": {"type": "boolean"},
        "followRedirects": {"type": "boolean"},
        "enableHttp2": {"type": "boolean"},
        "filterRunning": {"type": "boolean"},
        "proxyUrl": {"type": "string"},
        "relabelings": {"type": "array", "items": {"type": "object"}},
        "metricRelabelings": {"type": "array", "items": {"type": "object"}},
        "tlsConfig": {"type": "object"},
        "bearerTokenSecret": {"type": "object"},
        "basicAuth": {"type": "object"},
        "authorization": {"type": "object"},
        "oauth2": {"type": "object"},
    },
}

SCHEMAS = {}
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
SCHEMAS.update({("keda.sh/v1alpha1", kind): schema for kind, schema in KEDA_SCHEMAS.items()})
SCHEMAS[("monitoring.coreos.com/v1", "ServiceMonitor")] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
                "jobLabel": {"type": "string"},
                "targetLabels": {"type": "array", "items": {"type": "string"}},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "sampleLimit": {"type": "integer", "minimum": 0},
                "targetLimit": {"type": "integer", "minimum": 0},
                "labelLimit": {"type": "integer", "minimum": 0},
                "labelNameLengthLimit": {"type": "integer", "minimum": 0},
                "labelValueLengthLimit": {"type": "integer", "minimum": 0},
                "keepDroppedTargets": {"type": "integer", "minimum": 0},
                "attachMetadata": {"type": "object"},
                "scrapeProtocols": {"type": "array", "items": {"type": "string"}},
                "scrapeClass": {"type": "string"},
            },
        },
    },
}
KAFKA_TRIGGER_REQUIRED = ("bootstrapServers", "consumerGroup", "topic", "lagThreshold")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def schema_errors(obj):
    """What is wrong with ``obj`` against its kind's schema, as "path: message" lines.

    ``None`` when no schema describes the object's apiVersion and kind.
    """
    schema = SCHEMAS.get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return None
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(obj), key=lambda e: list(e.path))
    return [f"{'.'.join(str(p) for p in error.path)}: {error.message}" for error in errors]


def seconds(duration):
    """A Prometheus duration (``1m30s``, ``500ms``) in seconds."""
    return sum(
        int(number) * _DURATION_UNITS[unit]
        for number, unit in re.findall(r"([0-9]+)(ms|[smhdwy])", duration)
    )


def selects(selector, labels):
    """Whether a LabelSelector (matchLabels, matchExpressions) selects ``labels``."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if not {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]:
            return False
    return True


def reference_errors(obj, deployments, auths, services=None):
    """What a schema-valid object gets wrong about the rest of the release.

    ``deployments`` and ``auths`` are the names of the rendered Deployments and
    TriggerAuthentications; ``services`` maps each rendered Service's name to its
    labels and port names.
    """
    if obj["kind"] == "ServiceMonitor":
        return service_monitor_errors(obj, services or {})
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


def service_monitor_errors(obj, services):
    """A ServiceMonitor must select Services of the release, each with every endpoint's
    port, and scrape no longer than its interval."""
    spec = obj["spec"]
    selected = sorted(n for n, (labels, _) in services.items() if selects(spec["selector"], labels))
    if not selected:
        return ["selector selects no Service of the release"]
    problems = []
    for endpoint in spec["endpoints"]:
        port = endpoint.get("port")
        for name in selected:
            if port and port not in services[name][1]:
                problems.append(f"endpoint port {port} is not a port of Service {name}")
        interval, timeout = endpoint.get("interval"), endpoint.get("scrapeTimeout")
        if interval and timeout and seconds(timeout) > seconds(interval):
            problems.append(f"scrapeTimeout {timeout} is longer than interval {interval}")
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
        services = {
            o["metadata"]["name"]: (
                o["metadata"].get("labels") or {},
                {p.get("name") for p in o["spec"].get("ports") or []},
            )
            for o in others
            if o["kind"] == "Service"
        }
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
            for problem in reference_errors(obj, deployments, auths, services):
                print(f"ERROR {label}: {problem}")
                failures += 1
            print(f"INFO {label}: valid")
    return 1 if failures else 0
