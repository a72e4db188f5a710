"""``kubectl nfd nodes``' table as pure functions (the command runs in tests/e2e)."""

from __future__ import annotations

from nfd.cli.nodetable import (
    Node,
    common_prefix,
    render_nodes,
    select_columns,
    shortened,
    split_patterns,
)

NS = "feature.node.kubernetes.io"


def test_common_prefix_ends_at_a_separator_and_leaves_a_name():
    assert common_prefix([f"{NS}/cpu-cpuid.AVX", f"{NS}/cpu-cpuid.AVX2"]) == f"{NS}/cpu-cpuid."
    assert common_prefix([f"{NS}/cpu-model.id"]) == f"{NS}/cpu-model."
    assert common_prefix(["a.b", "a.b.c"]) == "a."
    assert common_prefix(["x/y", "z/y"]) == ""
    assert common_prefix([]) == ""


def test_only_the_nfd_columns_are_shortened_when_nothing_is_shared():
    prefix, headers, note = shortened([f"{NS}/pci-10de.present", "nvidia.com/gpu.count"])
    assert (prefix, headers) == (f"{NS}/", ["pci-10de.present", "nvidia.com/gpu.count"])
    assert "where COLUMN has no '/'" in note
    # An unprefixed label would be ambiguous: then nothing is shortened.
    assert shortened([f"{NS}/a", "plain"]) == ("", [f"{NS}/a", "plain"], "")


def test_patterns_globs_and_exact_names():
    nodes = [Node("n1", {f"{NS}/b": "1", f"{NS}/a": "2", "x/y": "3"})]
    assert split_patterns(["a,b", " c ", ","]) == ["a", "b", "c"]
    assert select_columns(nodes, [f"{NS}/*", "absent", f"{NS}/a"]) == [
        f"{NS}/a",
        f"{NS}/b",
        "absent",
    ]


def test_long_node_names_and_values_are_clipped_to_fit():
    nodes = [
        Node("n" * 100, {"a/x": "v" * 63, "a/y": "true"}),
        Node("short", {"a/x": "1"}),
    ]
    text = render_nodes(nodes, ["a/x", "a/y"], width=80)
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert "…" in text
    assert lines[0].startswith("Labels: a/<COLUMN>")


def test_wide_does_not_clip_or_split():
    nodes = [Node("n" * 100, {"a/x": "v" * 63, "b/y": "true"})]
    text = render_nodes(nodes, ["a/x", "b/y"], width=80, wide=True)
    assert text.splitlines()[1] == "n" * 100 + "  " + "v" * 63 + "  true"


def test_no_nodes_and_no_columns():
    assert render_nodes([], ["a/x"]) == "No nodes found.\n"
    assert render_nodes([Node("n1", {})], []) == "NODE\nn1\n"


def test_a_name_without_namespace_is_also_the_default_namespaces():
    from nfd.cli.nodetable import Node, select_columns

    fnk = "feature.node.kubernetes.io/"
    nodes = [Node("a", {fnk + "gpu-class": "x", fnk + "cpu-a": "1", "team": "t"})]
    # As kubectl nfd explain prints them: the default namespace left out.
    assert select_columns(nodes, ["gpu-class"]) == [fnk + "gpu-class"]
    assert select_columns(nodes, ["cpu-*"]) == [fnk + "cpu-a"]
    # A label that exists as written stays itself.
    assert select_columns(nodes, ["team"]) == ["team"]
    assert select_columns(nodes, ["nope"]) == ["nope"]


def test_the_count_includes_labels_the_master_owns_outside_nfd_namespaces():
    from nfd.cli.nodes import COUNT_COLUMN, counted
    from nfd.cli.nodetable import owned_labels

    owned = owned_labels(
        {"nfd.node.kubernetes.io/feature-labels": "cpu-x,nvidia.com/gpu.product, team"}
    )
    assert owned == {
        "feature.node.kubernetes.io/cpu-x",
        "feature.node.kubernetes.io/team",
        "nvidia.com/gpu.product",
    }
    # DisableAutoPrefix: the master writes an unprefixed label as "/name".
    assert owned_labels({"nfd.node.kubernetes.io/feature-labels": "/foo,foo"}) == {
        "foo",
        "feature.node.kubernetes.io/foo",
    }
    labels = {
        "feature.node.kubernetes.io/cpu-x": "true",
        "nvidia.com/gpu.product": "H100",
        "nvidia.com/other": "not ours",
        "kubernetes.io/hostname": "n1",
    }
    (node,) = counted([Node("n1", labels, owned)])
    assert node.labels == {COUNT_COLUMN: "2"}
