"""The Grafana dashboard of the chart (``helm/dashboards/langgraph-kafka.json``) against
the metrics the services expose.

Every panel but rows and text has a PromQL target, and every target's expression
names only metrics of ``METRICS`` (a histogram's ``_bucket``, ``_sum`` and ``_count``
series count as the histogram); every metric of ``METRICS`` is drawn by some panel;
panels query the ``datasource`` variable, and the ``datasource``, ``namespace`` and
``job`` template variables exist.
"""

import json
import re

# The metrics of GET /metrics (docs/deploy.md, "Metrics"): name → type.
METRICS = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "tasks_published_total": "counter",
    "tasks_solved_total": "counter",
    "tasks_failed_total": "counter",
    "tasks_interrupted_total": "counter",
    "task_latency_seconds": "histogram",
    "tasks_in_flight": "gauge",
    "task_concurrency_limit": "gauge",
    "llm_requests_total": "counter",
    "llm_errors_total": "counter",
    "llm_request_duration_seconds": "histogram",
    "llm_tokens_total": "counter",
    "kafka_consumer_lag": "gauge",
    "dead_letters_total": "counter",
    "agent_requests_total": "counter",
    "agent_request_duration_seconds": "histogram",
    "agent_messages_handled_total": "counter",
}
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
VARIABLES = ("datasource", "namespace", "job")

# PromQL words that are not metric names: functions, aggregations, keywords.
_FUNCTIONS = {
    "abs",
    "absent",
    "absent_over_time",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "delta",
    "deriv",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "time",
    "timestamp",
    "vector",
    "year",
}
_AGGREGATIONS = {
    "avg",
    "bottomk",
    "count",
    "count_values",
    "group",
    "max",
    "min",
    "quantile",
    "stddev",
    "stdvar",
    "sum",
    "topk",
}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
# Clauses whose parentheses hold label names, not expressions.
_LABEL_LISTS = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def metric_names(expr):
    """The metric names a PromQL expression reads, as written (``…_bucket`` included)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = _LABEL_LISTS.sub("", text)
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables outside the above
    names = []
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if word.lower() in _KEYWORDS or word in _FUNCTIONS or word in _AGGREGATIONS:
            continue
        names.append(word)
    return names


def metric_of(series):
    """The metric of ``METRICS`` a series name belongs to, or None."""
    if series in METRICS:
        return series
    for suffix in HISTOGRAM_SERIES:
        base = series.removesuffix(suffix)
        if series.endswith(suffix) and METRICS.get(base) == "histogram":
            return base
    return None


def panels(dashboard):
    """Every panel of a dashboard, those inside collapsed rows included."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def problems(dashboard):
    """What is wrong with a dashboard (a parsed JSON object), as lines; empty when fine."""
    found, drawn = [], set()
    names = {v.get("name") for v in (dashboard.get("templating") or {}).get("list") or []}
    found += [f"no template variable ${name}" for name in VARIABLES if name not in names]
    for panel in panels(dashboard):
        if panel.get("type") in ("row", "text"):
            continue
        title = panel.get("title") or f"panel {panel.get('id')}"
        if (panel.get("datasource") or {}).get("uid") != "${datasource}":
            found.append(f"{title}: datasource is not ${{datasource}}")
        exprs = [t.get("expr") for t in panel.get("targets") or [] if t.get("expr")]
        if not exprs:
            found.append(f"{title}: no PromQL target")
        known_in_panel = False
        for expr in exprs:
            for series in metric_names(expr):
                metric = metric_of(series)
                if metric is None:
                    found.append(f"{title}: unknown metric {series}")
                else:
                    drawn.add(metric)
                    known_in_panel = True
        if exprs and not known_in_panel:
            found.append(f"{title}: no target reads a metric of the services")
    found += [f"no panel draws {metric}" for metric in METRICS if metric not in drawn]
    return found


def check_dashboard(paths):
    """Checks each dashboard file; prints an ERROR line per problem. 1 if any."""
    failures = 0
    for path in paths:
        try:
            with open(path, encoding="utf-8") as handle:
                dashboard = json.load(handle)
        except (OSError, json.JSONDecodeError) as error:
            print(f"ERROR {path}: {error}")
            failures += 1
            continue
        found = problems(dashboard)
        for problem in found:
            print(f"ERROR {path}: {problem}")
        failures += len(found)
        if not found:
            print(f"INFO {path}: {sum(1 for _ in panels(dashboard))} panels, valid")
    return 1 if failures else 0
