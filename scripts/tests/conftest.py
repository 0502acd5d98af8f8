"""What the tests of k8s-check share: the repository, the tool venv, renders of the chart."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S_CHECK = REPO / "scripts" / "k8s-check.sh"


@pytest.fixture(scope="session")
def k8s_check():
    """``k8s_check(*args, script=…, env={…})``: runs k8s-check.sh; (exit code, output).

    ``script`` is scripts/k8s-check.sh of the repository unless given (a copy's); ``env``
    adds to the environment. Every run uses the tool venv of the repository (K8S_VENV),
    so a copy installs nothing. The output is stdout and stderr together.
    """

    def k8s_check(*args, script=K8S_CHECK, env=None):
        full_env = dict(os.environ)
        full_env.setdefault("K8S_VENV", str(REPO / ".venv-k8s"))
        full_env.update(env or {})
        run = subprocess.run(
            [str(script), *args],
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        return run.returncode, run.stdout

    return k8s_check


class Render:
    """A render by ``k8s-check.sh render --out``: its objects, by kind, and NOTES.txt."""

    def __init__(self, out):
        self.out = out
        with open(out / "manifests.yaml", encoding="utf-8") as handle:
            self.objects = [o for o in yaml.safe_load_all(handle) if o]
        crds = out / "crds.yaml"
        self.crds = []
        if crds.exists():
            with open(crds, encoding="utf-8") as handle:
                self.crds = [o for o in yaml.safe_load_all(handle) if o]
        self.notes = (out / "NOTES.txt").read_text(encoding="utf-8")

    def of_kind(self, kind):
        return [o for o in self.objects if o["kind"] == kind]

    def named(self, kind, name):
        """The object of ``kind`` called ``name``, or None."""
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)


@pytest.fixture(scope="session")
def render(tmp_path_factory, k8s_check):
    """``render(*args)``: the chart rendered with helm arguments ``args``, as a Render."""

    def render(*args):
        out = tmp_path_factory.mktemp("render")
        rc, log = k8s_check("render", *args, "--out", str(out))
        assert rc == 0, f"k8s-check.sh render {' '.join(args)} failed:\n{log}"
        return Render(out)

    return render
