"""k8s_check.values: values files and --set flags coalesced as Helm does."""

from k8s_check.values import merge, user_values


def test_maps_merge_and_everything_else_is_replaced():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    merged = merge(base, {"a": {"c": [3], "e": None}, "d": {"f": 1}})
    assert merged == {"a": {"b": 1, "c": [3], "e": None}, "d": {"f": 1}}
    assert merged is base


def test_set_flags_override_values_files_which_override_each_other_in_order(tmp_path):
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text("image:\n  repository: one\n  tag: a\nreplicas: 1\n", encoding="utf-8")
    second.write_text("image:\n  tag: b\n", encoding="utf-8")
    values = user_values([str(first), str(second)], ["image.repository=two,replicas=3"])
    assert values == {"image": {"repository": "two", "tag": "b"}, "replicas": 3}


def test_an_empty_values_file_and_no_flags_give_no_values(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n", encoding="utf-8")
    assert user_values([str(empty)], None) == {}
    assert user_values(None, None) == {}
