"""What the chart renders: every object it promises, with the settings the values give."""

import base64
import json
from pathlib import Path

import pytest
import yaml
from k8s_check.crds import selects

DEV_VALUES = Path(__file__).resolve().parents[2] / "values-dev.yaml"
SERVICES = ("task-generator", "agent-comms", "task-solver")


@pytest.fixture(scope="module")
def dev(render):
    return render("--values", str(DEV_VALUES))


@pytest.fixture(scope="module")
def production(render):
    return render()


def deployment(render, service):
    found = render.named("Deployment", f"langgraph-kafka-{service}")
    assert found is not None, f"no Deployment langgraph-kafka-{service}"
    return found["spec"]["template"]["spec"]


@pytest.mark.parametrize(
    ("service", "port"),
    [
        ("langgraph-kafka-task-generator", 8001),
        ("langgraph-kafka-agent-comms", 8000),
        ("langgraph-kafka-task-solver", 8002),
        ("kafka-service", 9092),
    ],
)
def test_each_service_listens_on_its_port(dev, service, port):
    found = dev.named("Service", service)
    assert found is not None, f"no Service {service}"
    assert port in [p["port"] for p in found["spec"]["ports"]]


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_liveness_and_readiness_probes(dev, service):
    container = deployment(dev, service)["containers"][0]
    assert "livenessProbe" in container
    assert "readinessProbe" in container


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_resource_requests_and_limits(dev, service):
    resources = deployment(dev, service)["containers"][0].get("resources", {})
    assert resources.get("limits")
    assert resources.get("requests")


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_runs_as_non_root_on_a_read_only_root_with_all_capabilities_dropped(
    dev, service
):
    pod = deployment(dev, service)
    security = pod["containers"][0].get("securityContext", {})
    assert security.get("readOnlyRootFilesystem") is True
    assert security.get("allowPrivilegeEscalation") is False
    assert security.get("capabilities", {}).get("drop") == ["ALL"]
    assert pod.get("securityContext", {}).get("runAsNonRoot") is True


@pytest.mark.parametrize(
    "kind", ["ConfigMap", "Secret", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"]
)
def test_the_dev_render_holds_the_objects_around_the_services(dev, kind):
    assert dev.of_kind(kind), f"no {kind}"


def test_a_horizontal_pod_autoscaler_scales_the_task_solver(dev):
    targets = [h["spec"]["scaleTargetRef"]["name"] for h in dev.of_kind("HorizontalPodAutoscaler")]
    assert "langgraph-kafka-task-solver" in targets


def test_dev_kafka_is_one_apache_kafka_broker_without_persistence(dev):
    brokers = [
        s
        for s in dev.of_kind("StatefulSet")
        if s["spec"]["template"]["spec"]["containers"][0]["image"].startswith("apache/kafka:")
    ]
    assert [s["spec"]["replicas"] for s in brokers] == [1]
    assert all("volumeClaimTemplates" not in s["spec"] for s in dev.of_kind("StatefulSet"))


def test_a_post_install_hook_job_creates_the_topics_with_kafka_topics(dev):
    jobs = dev.of_kind("Job")
    assert any(
        "post-install" in j["metadata"].get("annotations", {}).get("helm.sh/hook", "") for j in jobs
    )
    assert any(
        "--partitions" in j["spec"]["template"]["spec"]["containers"][0]["args"][0] for j in jobs
    )


def test_the_topics_job_takes_partitions_replication_and_retention_from_the_values(dev):
    env = {
        e["name"]: e.get("value")
        for j in dev.of_kind("Job")
        for e in j["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env.get("PARTITIONS") == "3"
    assert env.get("REPLICATION_FACTOR") == "1"
    assert "dev-langgraph-agent-events:86400000" in env.get("TOPICS", "")


def test_the_topics_job_compacts_the_results_topic_and_keeps_progress_a_day(dev):
    (job,) = [j for j in dev.of_kind("Job") if j["metadata"]["name"].endswith("-topics")]
    container = job["spec"]["template"]["spec"]["containers"][0]
    topics = {e["name"]: e.get("value") for e in container["env"]}["TOPICS"].split()
    assert topics == [
        "dev-langgraph-agent-events:86400000",
        "dev-langgraph-task-results:86400000:cleanup.policy=compact,min.compaction.lag.ms=86400000",
        "dev-langgraph-dead-letter:259200000",
        "dev-langgraph-task-progress:86400000",
        "dev-agent-requests-task-solver:86400000",
        "dev-agent-replies:3600000",
        "dev-agent-describe:3600000",
    ]
    script = container["args"][0]
    assert '"${configs[@]}"' in script
    assert "kafka-configs.sh" in script and "--add-config" in script


def test_the_dev_render_holds_the_helm_test_pod(dev):
    hooks = [p["metadata"].get("annotations", {}).get("helm.sh/hook") for p in dev.of_kind("Pod")]
    assert "test" in hooks


def test_the_dev_services_reach_the_built_in_kafka_in_plaintext(dev):
    config = dev.of_kind("ConfigMap")[0]["data"]
    assert config.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka-service:9092"
    assert config.get("KAFKA_SECURITY_PROTOCOL") == "PLAINTEXT"


def test_dev_checkpoints_and_the_results_view_go_to_the_dev_postgresql(dev):
    config = dev.of_kind("ConfigMap")[0]["data"]
    assert config.get("DISABLECHECKPOINTER") == "false"
    assert config.get("CHECKPOINTER") == "postgres"
    assert config.get("RESULTS_STORE") == "postgres"
    (database,) = [
        s for s in dev.of_kind("StatefulSet") if s["metadata"]["name"].endswith("-postgresql")
    ]
    pod = database["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "postgres:16-alpine"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["containers"][0]["resources"]["limits"]
    assert dev.named("Service", "langgraph-kafka-postgresql")["spec"]["ports"][0]["port"] == 5432
    # DATABASE_URL, in the chart's Secret, holds the password of the PostgreSQL's Secret.
    credentials = dev.named("Secret", "langgraph-kafka-postgresql")["data"]
    url = base64.b64decode(dev.named("Secret", "langgraph-kafka")["data"]["DATABASE_URL"]).decode()
    password = base64.b64decode(credentials["password"]).decode()
    assert url == f"postgres://langgraph:{password}@langgraph-kafka-postgresql:5432/langgraph"
    for service in ("task-generator", "task-solver"):
        env = [e["name"] for e in deployment(dev, service)["containers"][0]["env"]]
        assert "DATABASE_URL" in env, service
    env = [e["name"] for e in deployment(dev, "agent-comms")["containers"][0]["env"]]
    assert "DATABASE_URL" not in env


def test_only_the_task_generator_and_task_solver_may_reach_the_dev_postgresql(dev):
    policy = dev.named("NetworkPolicy", "langgraph-kafka-postgresql")
    assert policy["spec"]["egress"] == []
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
    (peer,) = rule["from"]
    components = next(
        e["values"]
        for e in peer["podSelector"]["matchExpressions"]
        if e["key"].endswith("component")
    )
    assert sorted(components) == ["task-generator", "task-solver"]

    def reaches_postgresql(service):
        egress = dev.named("NetworkPolicy", f"langgraph-kafka-{service}")["spec"]["egress"]
        return any(
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component")
            == "postgresql"
            for rule in egress
            for peer in rule.get("to", [])
        )

    assert reaches_postgresql("task-generator") and reaches_postgresql("task-solver")
    assert not reaches_postgresql("agent-comms")


def test_the_production_defaults_keep_the_sqlite_view_in_an_empty_dir_without_postgresql(
    production,
):
    assert production.of_kind("ConfigMap")[0]["data"]["RESULTS_STORE"] == "sqlite"
    assert not production.of_kind("PersistentVolumeClaim")
    assert not [
        s for s in production.of_kind("StatefulSet") if "postgresql" in s["metadata"]["name"]
    ]
    volumes = {v["name"]: v for v in deployment(production, "task-generator")["volumes"]}
    assert "emptyDir" in volumes["data"]


def test_sqlite_persistence_puts_the_view_on_a_claim_and_recreates_the_one_task_generator(render):
    persistent = render(
        "--set",
        "resultsStore.sqlite.persistence.enabled=true",
        "--set",
        "resultsStore.sqlite.persistence.size=5Gi",
        "--set",
        "resultsStore.sqlite.persistence.storageClass=gp3",
        "--set",
        "taskGenerator.replicaCount=1",
    )
    claim = persistent.named("PersistentVolumeClaim", "langgraph-kafka-task-generator-data")
    assert claim is not None
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "gp3"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    generator = persistent.named("Deployment", "langgraph-kafka-task-generator")
    assert generator["spec"]["replicas"] == 1
    assert generator["spec"]["strategy"] == {"type": "Recreate"}
    volumes = {v["name"]: v for v in generator["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def test_a_postgres_results_store_with_an_external_database_url_gets_it_in_the_generator(render):
    external = render(
        "--set",
        "resultsStore.backend=postgres",
        "--set",
        "checkpointer.databaseUrl=postgres://u:p@db.example.internal:5432/langgraph",
    )
    url = base64.b64decode(external.named("Secret", "langgraph-kafka")["data"]["DATABASE_URL"])
    assert url == b"postgres://u:p@db.example.internal:5432/langgraph"
    env = [e["name"] for e in deployment(external, "task-generator")["containers"][0]["env"]]
    assert "DATABASE_URL" in env
    assert external.of_kind("ConfigMap")[0]["data"]["RESULTS_STORE"] == "postgres"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            ["resultsStore.backend=postgres"],
            "resultsStore.backend=postgres needs a DATABASE_URL",
        ),
        (
            ["resultsStore.sqlite.persistence.enabled=true"],
            "resultsStore.sqlite.persistence.enabled needs taskGenerator.replicaCount: 1, not 2",
        ),
    ],
)
def test_a_results_store_the_values_cannot_serve_fails_the_render_naming_the_keys(
    k8s_check, values, message
):
    args = [a for value in values for a in ("--set", value)]
    rc, out = k8s_check("render", *args)
    assert rc != 0
    assert message in out


def test_the_notes_tell_how_to_port_forward_and_post_a_conversation(dev):
    assert "port-forward svc/langgraph-kafka-task-generator 8001:8001" in dev.notes
    assert "curl -X POST localhost:8001/generate-task" in dev.notes


def test_cors_origins_reach_the_services_only_when_set(render, production, k8s_check, tmp_path):
    assert "CORS_ALLOW_ORIGINS" not in production.of_kind("ConfigMap")[0]["data"]
    origins = "https://app.example.com, http://localhost:3000"
    values = tmp_path / "cors.yaml"
    values.write_text(yaml.safe_dump({"env": {"corsAllowOrigins": origins}}), encoding="utf-8")
    with_cors = render("--values", str(values))
    assert with_cors.of_kind("ConfigMap")[0]["data"]["CORS_ALLOW_ORIGINS"] == origins
    rc, out = k8s_check("render", "--set", "env.corsAllowOrigins=https://app.example.com/")
    assert rc != 0, out
    assert "corsAllowOrigins" in out, out


def test_an_otlp_endpoint_reaches_the_services_only_when_set(render, production, k8s_check):
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in production.of_kind("ConfigMap")[0]["data"]
    endpoint = "http://otel-collector.observability:4318"
    traced = render("--set", f"env.otelExporterOtlpEndpoint={endpoint}")
    assert traced.of_kind("ConfigMap")[0]["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == endpoint
    rc, out = k8s_check("render", "--set", "env.otelExporterOtlpEndpoint=otel-collector:4318")
    assert rc != 0, out
    assert "otelExporterOtlpEndpoint" in out, out


def test_the_production_defaults_run_three_kafka_brokers_with_persistence(production):
    broker = production.of_kind("StatefulSet")[0]
    assert broker["spec"]["replicas"] == 3
    assert broker["spec"].get("volumeClaimTemplates")


def test_the_production_defaults_turn_on_sasl_the_checkpointer_and_replication_factor_3(
    production,
):
    config = production.of_kind("ConfigMap")[0]["data"]
    assert config["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
    assert config["DISABLECHECKPOINTER"] == "false"
    assert config["KAFKA_REPLICATION_FACTOR"] == "3"


def test_keda_enabled_renders_a_scaled_object_in_place_of_the_hpa(render):
    keda = render("--values", str(DEV_VALUES), "--set", "taskSolver.keda.enabled=true")
    assert "ScaledObject" in [o["kind"] for o in keda.crds]
    assert not keda.of_kind("HorizontalPodAutoscaler")


def test_image_repository_and_tag_name_the_image_of_every_service(k8s_check):
    rc, out = k8s_check(
        "render",
        "--values",
        str(DEV_VALUES),
        "--set",
        "image.repository=R",
        "--set",
        "image.tag=T",
    )
    assert rc == 0, out
    images = sorted(
        c["image"]
        for o in yaml.safe_load_all(out)
        if o and o["kind"] == "Deployment"
        for c in o["spec"]["template"]["spec"]["containers"]
    )
    assert images == ["R/agent-comms:T", "R/task-generator:T", "R/task-solver:T"]


def test_the_sqlite_checkpointer_is_refused_since_a_pod_could_not_keep_its_file(k8s_check):
    rc, out = k8s_check("render", "--set", "checkpointer.backend=sqlite")
    assert rc != 0
    assert "at '/checkpointer/backend': value must be one of 'memory', 'postgres'" in out


PORTS = {"task-generator": 8001, "agent-comms": 8000, "task-solver": 8002}
DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "dashboards" / "langgraph-kafka.json"


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_pod_is_annotated_for_prometheus_on_its_port(dev, production, service):
    for render in (dev, production):
        pod = render.named("Deployment", f"langgraph-kafka-{service}")["spec"]["template"]
        annotations = pod["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(PORTS[service])
        assert annotations["prometheus.io/path"] == "/metrics"
        assert pod["spec"]["containers"][0]["ports"][0]["containerPort"] == PORTS[service]


def test_pod_annotations_off_leave_the_pods_unannotated_and_a_service_s_own_key_wins(
    render, tmp_path
):
    off = render(
        "--set", "metrics.podAnnotations=false", "--set", "taskSolver.podAnnotations.team=agents"
    )
    for service in SERVICES:
        annotations = off.named("Deployment", f"langgraph-kafka-{service}")["spec"]["template"][
            "metadata"
        ]["annotations"]
        assert not [k for k in annotations if k.startswith("prometheus.io/")], service
    solver = off.named("Deployment", "langgraph-kafka-task-solver")
    assert solver["spec"]["template"]["metadata"]["annotations"]["team"] == "agents"
    values = tmp_path / "own.yaml"
    values.write_text(
        yaml.safe_dump({"taskSolver": {"podAnnotations": {"prometheus.io/scrape": "false"}}}),
        encoding="utf-8",
    )
    own = render("--values", str(values))
    solver = own.named("Deployment", "langgraph-kafka-task-solver")
    annotations = solver["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "false"
    assert annotations["prometheus.io/port"] == "8002"


@pytest.mark.parametrize("service", SERVICES)
def test_the_monitoring_namespace_may_scrape_each_service_s_port(production, service):
    rules = production.named("NetworkPolicy", f"langgraph-kafka-{service}")["spec"]["ingress"]
    scraper = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    assert {"ports": [{"protocol": "TCP", "port": PORTS[service]}], "from": [scraper]} in rules
    # Everything else still comes only from networkPolicy.ingressFrom.
    assert all(rule.get("from") for rule in rules)
    assert len(rules) == 2


def test_scrape_from_names_the_scraper_and_empty_adds_no_rule(render, tmp_path):
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prometheus"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    values = tmp_path / "scrapers.yaml"
    values.write_text(yaml.safe_dump({"metrics": {"scrapeFrom": [peer]}}), encoding="utf-8")
    named = render("--values", str(values))
    rules = named.named("NetworkPolicy", "langgraph-kafka-task-solver")["spec"]["ingress"]
    assert rules[1] == {"ports": [{"protocol": "TCP", "port": 8002}], "from": [peer]}
    values.write_text(yaml.safe_dump({"metrics": {"scrapeFrom": []}}), encoding="utf-8")
    none = render("--values", str(values))
    for service in SERVICES:
        rules = none.named("NetworkPolicy", f"langgraph-kafka-{service}")["spec"]["ingress"]
        assert [r["from"] for r in rules] == [[{"podSelector": {}}]], service


def dashboard_config_maps(render):
    return [
        c
        for c in render.of_kind("ConfigMap")
        if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]


def test_the_service_monitor_and_the_dashboard_are_off_by_default(dev, production):
    for render in (dev, production):
        assert not [o for o in render.crds if o["kind"] == "ServiceMonitor"]
        assert not dashboard_config_maps(render)


def test_the_service_monitor_scrapes_the_three_services_on_their_http_port(render):
    monitored = render(
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.serviceMonitor.interval=15s",
        "--set",
        "metrics.serviceMonitor.scrapeTimeout=5s",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    )
    (monitor,) = [o for o in monitored.crds if o["kind"] == "ServiceMonitor"]
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == "langgraph"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selected = [
        s
        for s in monitored.of_kind("Service")
        if selects(monitor["spec"]["selector"], s["metadata"]["labels"])
    ]
    assert sorted(s["metadata"]["name"] for s in selected) == [
        f"langgraph-kafka-{service}" for service in sorted(SERVICES)
    ]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": "http",
        "path": "/metrics",
        "scheme": "http",
        "interval": "15s",
        "scrapeTimeout": "5s",
    }
    for service in selected:
        assert "http" in [p["name"] for p in service["spec"]["ports"]]


def test_the_dashboard_config_map_holds_the_chart_s_dashboard_for_grafana_s_sidecar(
    render, tmp_path
):
    values = tmp_path / "dashboard.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "metrics": {
                    "grafanaDashboard": {
                        "enabled": True,
                        "namespace": "monitoring",
                        "labels": {"team": "agents"},
                        "annotations": {"grafana_folder": "LLM agents"},
                    }
                }
            }
        ),
        encoding="utf-8",
    )
    (config_map,) = dashboard_config_maps(render("--values", str(values)))
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["team"] == "agents"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "LLM agents"}
    (name,) = config_map["data"]
    assert name == "langgraph-kafka.json"
    assert json.loads(config_map["data"][name]) == json.loads(DASHBOARD.read_text("utf-8"))
