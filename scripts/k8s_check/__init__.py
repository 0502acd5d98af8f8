"""The Python half of ``scripts/k8s-check.sh``: the parts of Helm it needs, the checks of
the custom resources and of the Grafana dashboard.

Run as ``python -m k8s_check {lint,render,check-crds,check-dashboard} …`` with ``scripts/`` on
``PYTHONPATH`` and the tool venv's Python (``.venv-k8s``: helm-python-sdk, jsonschema,
PyYAML); ``scripts/k8s-check.sh`` does both.

Layout:

- ``__main__``: the command line.
- ``values``: the values a render or lint sees (``--values`` files, then ``--set`` flags).
- ``lint``: ``helm lint --strict`` through the Helm v4 Go SDK.
- ``render``: ``helm template`` into ``manifests.yaml``, ``crds.yaml`` and ``NOTES.txt``,
  with the checks Helm does not do (numbers in scientific notation, duplicate objects).
- ``crds``: the custom resources (KEDA's ``keda.sh/v1alpha1``, the Prometheus Operator's
  ServiceMonitor) against structural schemas, since kubernetes-validate has no schema
  for a CRD.
- ``dashboard``: the Grafana dashboard's panels against the metrics the services expose.
"""
