"""``helm lint --strict`` through the Helm v4 Go SDK (helm-python-sdk)."""

import helm_python as helm

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def lint(chart, values, namespace, kube_version):
    """Lints ``chart`` with ``values``, prints each message; 1 if any is a warning or worse."""
    report = helm.lint(
        chart, values, strict=True, namespace=namespace, kube_version="v" + kube_version
    )
    messages = report.get("messages", [])
    bad = 0
    for message in messages:
        severity = message.get("severity", 0)
        print(
            f"  [{SEVERITY.get(severity, severity)}] {message.get('path')}: "
            f"{message.get('error', '').strip()}"
        )
        # --strict: warnings fail as errors do.
        if severity >= 2:
            bad += 1
    for error in report.get("errors", []):
        if not any(error.strip() in m.get("error", "") for m in messages):
            print(f"  [ERROR] {error.strip()}")
            bad += 1
    print(f"  {report.get('total_charts_linted', 0)} chart(s) linted, {bad} failure(s)")
    return 1 if bad else 0
