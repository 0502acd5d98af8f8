"""``helm template`` through the Helm v4 Go SDK, with the checks Helm does not do.

The rendered objects go to ``manifests.yaml`` (what kubernetes-validate checks),
``crds.yaml`` (the objects of the CRD groups in ``CRD_GROUPS``, which the ``crds`` module
checks) and ``NOTES.txt``; each object is a document headed ``# Source: <template>``.
"""

import os
import re
import sys

import yaml

# A number Helm printed from a float64 (values files): 604800000 → 6.048e+08.
SCIENTIFIC = re.compile(r"(?<![\w.])[0-9](\.[0-9]+)?e\+[0-9]+\b")
CRD_GROUPS = ("keda.sh/", "monitoring.coreos.com/")


def split_documents(text):
    """Rendered template text → non-empty YAML documents (text kept for yamllint)."""
    docs = re.split(r"^---[ \t]*$", text, flags=re.M)
    return [
        d.strip("\n")
        for d in docs
        if any(line.strip() and not line.lstrip().startswith("#") for line in d.splitlines())
    ]


def sort_documents(rendered):
    """Templates (name → text) → (manifests, crds, notes, problems).

    ``manifests`` and ``crds`` are lists of documents, each headed ``---`` and
    ``# Source:``; ``problems`` lists what a render must not hold: a number in scientific
    notation, text that is not YAML, a document without kind, apiVersion or
    metadata.name, and one object rendered twice.
    """
    manifests, crds, notes, seen, problems = [], [], "", set(), []
    for template in sorted(rendered):
        text = rendered[template]
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in split_documents(text):
            for match in SCIENTIFIC.finditer(doc):
                problems.append(
                    f"{template}: number in scientific notation '{match.group(0)}' "
                    "(print it through the langgraph-kafka.scalar helper or int64)"
                )
            try:
                obj = yaml.safe_load(doc)
            except yaml.YAMLError as error:
                problems.append(f"{template}: not YAML: {error}")
                continue
            if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
                problems.append(f"{template}: a document without kind/apiVersion")
                continue
            name = (obj.get("metadata") or {}).get("name")
            if not name:
                problems.append(f"{template}: {obj['kind']} without metadata.name")
            key = (obj["apiVersion"].split("/")[0], obj["kind"], name)
            if key in seen:
                problems.append(f"{template}: duplicate {obj['kind']} {name}")
            seen.add(key)
            block = f"---\n# Source: {template}\n{doc}\n"
            (crds if obj["apiVersion"].startswith(CRD_GROUPS) else manifests).append(block)
    return manifests, crds, notes, problems


def write(out, manifests, crds, notes):
    """Writes the three files into directory ``out``; a crds.yaml with nothing is removed."""
    os.makedirs(out, exist_ok=True)
    for name, blocks in (("manifests.yaml", manifests), ("crds.yaml", crds)):
        path = os.path.join(out, name)
        if blocks:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write("".join(blocks))
        elif os.path.exists(path):
            os.remove(path)
    with open(os.path.join(out, "NOTES.txt"), "w", encoding="utf-8") as handle:
        handle.write(notes)


def render(chart, values, release, namespace, out=None):
    """Renders ``chart`` as an install of ``release``; into ``out``, or onto stdout.

    Prints each problem on stderr; 1 if the render failed or found a problem.
    """
    import helm_python as helm

    with helm.Chart.load(chart) as loaded:
        try:
            rendered = loaded.render(
                values=values, name=release, namespace=namespace, is_install=True
            )
        except helm.HelmError as error:
            print(f"render failed: {error}", file=sys.stderr)
            return 1
    manifests, crds, notes, problems = sort_documents(rendered)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    if out:
        write(out, manifests, crds, notes)
    else:
        sys.stdout.write("".join(manifests + crds))
    return 1 if problems else 0
