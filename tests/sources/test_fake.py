"""fake source: upstream's defaults, opt-in only, config-driven features and labels."""

from __future__ import annotations

from pathlib import Path

from nfd.hostfs import HostFS
from nfd.sources import SourceContext, select_sources
from nfd.sources.fake import SOURCE
from nfd.worker.config import build_config, parse_config_text
from nfd.worker.discovery import run_discovery

NS = "feature.node.kubernetes.io/"


def test_not_enabled_by_all():
    assert "fake" not in select_sources(["all"])
    assert select_sources(["all", "fake"]).count("fake") == 1


def test_default_features_and_labels(tmp_path: Path):
    host = HostFS(str(tmp_path) + "/")
    config = build_config({"core": {"featureSources": ["fake"], "labelSources": ["fake"]}})
    result = run_discovery(host, config, "node")
    assert result.labels == {
        NS + "fake-fakefeature1": "true",
        NS + "fake-fakefeature2": "true",
        NS + "fake-fakefeature3": "true",
    }
    features = result.features
    assert features.flags == {"fake.flag": {"flag_1", "flag_2", "flag_3"}}
    assert features.attributes == {
        "fake.attribute": {"attr_1": "true", "attr_2": "false", "attr_3": "10"}
    }
    assert features.instances["fake.instance"] == [
        {
            "name": "instance_1",
            "attr_1": "true",
            "attr_2": "false",
            "attr_3": "10",
            "attr_4": "foobar",
        },
        {"name": "instance_2", "attr_1": "true", "attr_2": "true", "attr_3": "100"},
        {"name": "instance_3"},
    ]


def test_config_adds_to_default_maps_and_replaces_lists(tmp_path: Path):
    config = {
        "labels": {"my-label": True, "count": 3},
        "flagFeatures": ["only"],
        "attributeFeatures": {"a": "b"},
        "instanceFeatures": [{"name": "x", "n": 1}],
    }
    ctx = SourceContext(HostFS(str(tmp_path) + "/"), config)
    features = SOURCE.discover(ctx)
    assert features.flags == {"fake.flag": {"only"}}
    assert features.attributes == {
        "fake.attribute": {"attr_1": "true", "attr_2": "false", "attr_3": "10", "a": "b"}
    }
    assert features.instances == {"fake.instance": [{"name": "x", "n": "1"}]}
    assert SOURCE.labels(features, ctx) == {
        "fakefeature1": "true",
        "fakefeature2": "true",
        "fakefeature3": "true",
        "my-label": "true",
        "count": "3",
    }


def test_config_file_labels(tmp_path: Path):
    config = parse_config_text(
        "core:\n  labelSources: [fake]\n  featureSources: [fake]\n"
        "sources:\n  fake:\n    labels:\n      fakefeature1: overridden\n      extra: 'yes'\n"
        "    flagFeatures: [f]\n",
        "nfd-worker.conf",
    )
    assert config.warnings == []
    result = run_discovery(HostFS(str(tmp_path) + "/"), config, "node")
    assert result.labels == {
        NS + "fake-fakefeature1": "overridden",
        NS + "fake-fakefeature2": "true",
        NS + "fake-fakefeature3": "true",
        NS + "fake-extra": "yes",
    }
    assert result.features.flags == {"fake.flag": {"f"}}


def test_odd_config_values_do_not_crash(tmp_path: Path):
    ctx = SourceContext(
        HostFS(str(tmp_path) + "/"),
        {"labels": None, "flagFeatures": None, "attributeFeatures": [], "instanceFeatures": [5]},
    )
    features = SOURCE.discover(ctx)
    assert features.instances == {"fake.instance": [{}]}
    assert SOURCE.labels(features, ctx) == {
        "fakefeature1": "true",
        "fakefeature2": "true",
        "fakefeature3": "true",
    }
