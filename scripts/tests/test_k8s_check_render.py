"""k8s_check.render: rendered templates sorted into manifests, CRD objects and notes,
with what Helm lets through reported.
"""

from k8s_check.render import SCIENTIFIC, sort_documents, split_documents

CONFIG_MAP = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: one\ndata:\n  A: b\n"
SCALED_OBJECT = "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: s\n"


def test_documents_holding_only_comments_or_blank_lines_are_dropped():
    text = "# Source: x\n---\n\n---\n" + CONFIG_MAP + "---   \n# only a comment\n"
    assert split_documents(text) == [CONFIG_MAP.rstrip("\n")]


def test_keda_objects_go_to_crds_and_the_rest_to_manifests_each_headed_by_its_template():
    manifests, crds, notes, problems = sort_documents(
        {"c/templates/keda.yaml": SCALED_OBJECT, "c/templates/cm.yaml": CONFIG_MAP}
    )
    assert manifests == ["---\n# Source: c/templates/cm.yaml\n" + CONFIG_MAP]
    assert crds == ["---\n# Source: c/templates/keda.yaml\n" + SCALED_OBJECT]
    assert (notes, problems) == ("", [])


def test_notes_are_kept_apart_from_the_objects():
    manifests, _, notes, _ = sort_documents({"c/templates/NOTES.txt": "kubectl port-forward"})
    assert (manifests, notes) == ([], "kubectl port-forward")


def test_a_number_printed_from_a_float_is_a_problem():
    doc = CONFIG_MAP.replace("A: b", "RETENTION: 6.048e+08")
    *_, problems = sort_documents({"c/templates/cm.yaml": doc})
    assert problems == [
        "c/templates/cm.yaml: number in scientific notation '6.048e+08' "
        "(print it through the langgraph-kafka.scalar helper or int64)"
    ]


def test_plain_integers_versions_and_digests_are_not_scientific_notation():
    for text in ("604800000", "1.2.3e+4", "sha256:4e1f", "v1e+5", "x-1e+5z"):
        assert not SCIENTIFIC.search(text), text
    assert SCIENTIFIC.search("1e+06")


def test_an_object_rendered_twice_or_without_a_kind_or_a_name_is_a_problem():
    nameless = "apiVersion: v1\nkind: Secret\nmetadata: {}\n"
    *_, problems = sort_documents(
        {
            "c/templates/a.yaml": CONFIG_MAP,
            "c/templates/b.yaml": CONFIG_MAP + "---\nfoo: bar\n---\n" + nameless,
            "c/templates/c.yaml": "key: [unclosed\n",
        }
    )
    assert problems[:3] == [
        "c/templates/b.yaml: duplicate ConfigMap one",
        "c/templates/b.yaml: a document without kind/apiVersion",
        "c/templates/b.yaml: Secret without metadata.name",
    ]
    assert problems[3].startswith("c/templates/c.yaml: not YAML:")
    assert len(problems) == 4
