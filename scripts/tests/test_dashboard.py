"""The chart's Grafana dashboard (helm/dashboards/langgraph-kafka.json) against the metrics
the services expose, and k8s_check.dashboard, which checks it.
"""

import copy
import json
from pathlib import Path

import pytest
from k8s_check.dashboard import METRICS, check_dashboard, metric_names, panels, problems

DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "dashboards" / "langgraph-kafka.json"


@pytest.fixture(scope="module")
def dashboard():
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def test_the_metric_list_is_the_one_the_services_expose():
    assert sorted(METRICS) == sorted(
        [
            "http_requests_total",
            "http_request_duration_seconds",
            "tasks_published_total",
            "tasks_solved_total",
            "tasks_failed_total",
            "tasks_interrupted_total",
            "task_latency_seconds",
            "tasks_in_flight",
            "task_concurrency_limit",
            "llm_requests_total",
            "llm_errors_total",
            "llm_request_duration_seconds",
            "llm_tokens_total",
            "kafka_consumer_lag",
            "dead_letters_total",
            "agent_requests_total",
            "agent_request_duration_seconds",
            "agent_messages_handled_total",
        ]
    )


def test_the_dashboard_has_no_problem(dashboard):
    assert problems(dashboard) == []


def test_every_panel_reads_a_metric_of_the_services(dashboard):
    drawing = [p for p in panels(dashboard) if p["type"] not in ("row", "text")]
    assert len(drawing) >= 15
    for panel in drawing:
        read = {n for t in panel["targets"] for n in metric_names(t["expr"])}
        assert read, panel["title"]
        assert all(n.removesuffix("_bucket") in METRICS for n in read), (panel["title"], read)


def test_every_metric_is_drawn_and_histograms_as_quantiles(dashboard):
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    read = {n for e in exprs for n in metric_names(e)}
    for metric, kind in METRICS.items():
        assert (metric + "_bucket" if kind == "histogram" else metric) in read, metric
    for metric in (m for m, kind in METRICS.items() if kind == "histogram"):
        for quantile in ("0.5", "0.99"):
            assert any(
                f"histogram_quantile({quantile}," in e and f"{metric}_bucket" in e for e in exprs
            ), (metric, quantile)


def test_every_query_is_scoped_to_the_namespace_and_job_variables(dashboard):
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "namespace", "job"]
    assert dashboard["templating"]["list"][0]["query"] == "prometheus"
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                assert f'{name}{{namespace="$namespace", job=~"$job"' in target["expr"], (
                    panel["title"],
                    target["expr"],
                )


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (route, status) (rate(http_requests_total{job=~"$job"}[$__rate_interval]))',
            ["http_requests_total"],
        ),
        (
            "histogram_quantile(0.99, sum by (le) (rate(task_latency_seconds_bucket[5m])))",
            ["task_latency_seconds_bucket"],
        ),
        (
            'sum(rate(a_total{s=~"5.."}[1m])) / on(job) group_left(pod) sum(rate(b_total[1m]))',
            ["a_total", "b_total"],
        ),
        (
            "tasks_in_flight > bool 0 and task_concurrency_limit offset 5m",
            ["tasks_in_flight", "task_concurrency_limit"],
        ),
        ('label_replace(up, "x", "$1", "job", "(.*)") * 1e3', ["up"]),
    ],
)
def test_metric_names_are_read_from_promql(expr, names):
    assert metric_names(expr) == names


def broken(dashboard, expr):
    """``dashboard`` with the first target of its first panel reading ``expr``."""
    changed = copy.deepcopy(dashboard)
    first = next(p for p in panels(changed) if p.get("targets"))
    first["targets"] = [{"refId": "A", "expr": expr}]
    return changed, first["title"]


def test_an_unknown_metric_is_named(dashboard):
    changed, title = broken(dashboard, "sum(rate(http_request_total[5m]))")
    assert f"{title}: unknown metric http_request_total" in problems(changed)


def test_a_histogram_s_series_other_than_its_own_is_unknown(dashboard):
    changed, title = broken(dashboard, "rate(tasks_solved_total_bucket[5m])")
    assert f"{title}: unknown metric tasks_solved_total_bucket" in problems(changed)


def test_a_metric_no_panel_draws_is_named(dashboard):
    changed = copy.deepcopy(dashboard)
    for panel in panels(changed):
        panel["targets"] = [
            t for t in panel.get("targets", []) if "dead_letters_total" not in t["expr"]
        ]
    found = problems(changed)
    assert "no panel draws dead_letters_total" in found
    assert "Dead letters by topic: no PromQL target" in found


def test_a_panel_on_another_datasource_or_a_missing_variable_is_named(dashboard):
    changed = copy.deepcopy(dashboard)
    first = next(p for p in panels(changed) if p.get("targets"))
    first["datasource"] = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    changed["templating"]["list"] = [v for v in changed["templating"]["list"] if v["name"] != "job"]
    found = problems(changed)
    assert f"{first['title']}: datasource is not ${{datasource}}" in found
    assert "no template variable $job" in found


def test_check_dashboard_prints_each_problem_and_fails(tmp_path, capsys, dashboard):
    good = tmp_path / "good.json"
    good.write_text(json.dumps(dashboard), encoding="utf-8")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert check_dashboard([str(good)]) == 0
    assert capsys.readouterr().out.startswith(f"INFO {good}: ")
    assert check_dashboard([str(good), str(bad)]) == 1
    assert f"ERROR {bad}: Expecting property name" in capsys.readouterr().out
