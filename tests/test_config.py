"""nfd-worker.conf: upstream's core and sources sections, warnings, clear errors."""

from __future__ import annotations

import logging
import os

import pytest

from nfd.durations import parse_duration
from nfd.sources import select_sources
from nfd.worker.config import (
    ConfigError,
    build_config,
    load_config,
    parse_config_text,
)

FULL = """\
core:
  sleepInterval: 30s
  featureSources: [all, -memory]
  labelSources: [pci, system]
  labelWhiteList: '^(pci|system)-'
  noPublish: true
sources:
  pci:
    deviceClassWhitelist: ["0200", "03"]
  usb:
    deviceLabelFields: [vendor]
"""


def test_full_config():
    config = parse_config_text(FULL, "nfd-worker.conf")
    assert config.core.sleep_interval == 30.0
    assert config.core.feature_sources == ["all", "-memory"]
    assert config.core.label_sources == ["pci", "system"]
    assert config.core.label_whitelist == "^(pci|system)-"
    assert config.core.no_publish is True
    assert config.warnings == []


def test_source_config_overlays_defaults():
    config = parse_config_text(FULL, "nfd-worker.conf")
    # The user's list replaces the default list; options not given keep defaults.
    assert config.source_config("pci") == {
        "deviceClassWhitelist": ["0200", "03"],
        "deviceLabelFields": ["class", "vendor"],
    }
    assert config.source_config("usb") == {
        "deviceClassWhitelist": ["0e", "ef", "fe", "ff"],
        "deviceLabelFields": ["vendor"],
    }


def test_defaults():
    for text in ("", "# only a comment\n", "{}", "core:\n"):
        config = parse_config_text(text, "c")
        assert config.core.sleep_interval == 60.0
        assert config.core.feature_sources == ["all"]
        assert config.core.label_sources == ["all"]
        assert config.core.label_whitelist == ""
        assert config.core.no_publish is False
        assert config.source_config("pci")["deviceClassWhitelist"] == ["03", "0b40", "12"]


def test_json_is_accepted():
    config = parse_config_text('{"core": {"labelSources": ["usb"]}}', "c.json")
    assert config.core.label_sources == ["usb"]


def test_unknown_keys_warn_and_are_ignored():
    text = (
        "core:\n  labelSources: [pci]\n  bogusCore: 1\n"
        "sources:\n  pci:\n    deviceClassWhiteList: ['0c']\n  nosuch: {a: 1}\n"
        "extra: 1\n"
    )
    config = parse_config_text(text, "w.conf")
    assert config.core.label_sources == ["pci"]
    assert config.source_config("pci")["deviceClassWhitelist"] == ["03", "0b40", "12"]
    joined = "\n".join(config.warnings)
    for name in ("core.bogusCore", "sources.pci.deviceClassWhiteList", "sources.nosuch", "extra"):
        assert name in joined, f"no warning about {name}: {config.warnings}"


def test_deprecated_core_sources_overrides_label_sources():
    config = parse_config_text("core:\n  labelSources: [pci]\n  sources: [usb]\n", "c")
    assert config.core.label_sources == ["usb"]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("60s", 60.0), ("1m30s", 90.0), ("1h", 3600.0), ("500ms", 1.0), ("0", 0.0), ("-1s", -1.0)],
)
def test_sleep_interval(value, seconds):
    # Upstream raises intervals in (0, 1s) to one second; <= 0 means "once".
    assert parse_config_text(f"core: {{sleepInterval: {value}}}", "c").core.sleep_interval == (
        seconds
    )


def test_parse_duration():
    assert parse_duration("1.5s") == 1.5
    assert parse_duration(10) == 10.0
    for bad in ("abc", "10", "1x", "", "s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


# -- broken files: a clear error naming the file and the line ---------------------------


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("core:\n  labelSources: [pci\n  noPublish: true\n", None, "invalid YAML"),
        ("core:\n\tsleepInterval: 1s\n", 2, "invalid YAML"),
        ("core:\n  labelSources: [pci]\n  sleepInterval: soon\n", 3, "core.sleepInterval"),
        ("core:\n  noPublish: maybe\n", 2, "core.noPublish"),
        ("core:\n  labelWhiteList: '(unclosed'\n", 2, "core.labelWhiteList"),
        ("core:\n  featureSources: 7\n", 2, "core.featureSources"),
        ("core: [a, b]\n", 1, "core"),
        ("sources: 5\n", 1, "sources"),
        ("- just\n- a list\n", 1, "top level"),
    ],
)
def test_broken_config_names_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "nfd-worker.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(str(path), must_exist=True)
    message = str(err.value)
    assert message.startswith(f"{path}:"), message
    if line is not None:
        assert message.startswith(f"{path}:{line}:"), message
    else:
        assert message.split(":")[1].strip().isdigit(), message
    assert what in message, message


def test_missing_default_file_means_defaults(tmp_path):
    config = load_config(str(tmp_path / "absent.conf"))
    assert config.core.label_sources == ["all"]


def test_missing_named_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="absent.conf: no such file"):
        load_config(str(tmp_path / "absent.conf"), must_exist=True)


def test_unreadable_or_binary_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="a directory, not a regular file"):
        load_config(str(tmp_path), must_exist=True)  # a directory
    binary = tmp_path / "bin.conf"
    binary.write_bytes(b"core:\n  x: \xff\xfe\n")
    with pytest.raises(ConfigError, match="bin.conf"):
        load_config(str(binary), must_exist=True)


# -- source selection: names, all, -name ------------------------------------------------


def test_select_sources_all_excludes_fake():
    selected = select_sources(["all"])
    assert "fake" not in selected
    assert {"cpu", "kernel", "memory", "network", "pci", "storage", "system", "usb"} <= set(
        selected
    )


def test_select_sources_minus_name_removes():
    assert "pci" not in select_sources(["all", "-pci"])
    assert select_sources(["pci", "usb", "-usb"]) == ["pci"]
    assert select_sources(["-pci"]) == []
    assert "fake" in select_sources(["all", "fake"])


def test_select_sources_unknown_names_warn(caplog):
    with caplog.at_level(logging.WARNING):
        assert select_sources(["pci", "nosuch", "-nosuch2"]) == ["pci"]
    assert "nosuch" in caplog.text and "nosuch2" in caplog.text


# -- comments-only files are the empty document ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "# defaults only\n",
        "#core:\n#  sleepInterval: 60s\n   # indented\r\n#\ttab inside\n",
    ],
)
def test_comments_only_is_the_empty_document(text):
    assert parse_config_text(text, "c.conf") == parse_config_text("", "c.conf")


def test_control_character_in_a_comment_is_still_an_error():
    with pytest.raises(ConfigError, match=r"c.conf: invalid YAML: unacceptable character #x0001"):
        parse_config_text("# \x01\n", "c.conf")


def test_each_config_gets_its_own_copy_of_the_values():
    data = {"sources": {"pci": {"deviceClassWhitelist": ["03"], "deviceLabelFields": ["vendor"]}}}
    first, second = build_config(data), build_config(data)
    first.sources["pci"]["deviceClassWhitelist"].append("12")
    assert second.sources["pci"]["deviceClassWhitelist"] == ["03"]
    assert data["sources"]["pci"]["deviceClassWhitelist"] == ["03"]


def test_config_that_is_not_a_small_regular_file_is_refused_unread(tmp_path):
    fifo = tmp_path / "fifo.conf"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="fifo.conf: a FIFO, not a regular file"):
        load_config(str(fifo))  # returns at once: nothing opened it
    big = tmp_path / "big.conf"
    with open(big, "wb") as f:
        f.truncate(1 << 30)  # sparse: costs one stat, never a read
    with pytest.raises(ConfigError, match="over the 1048576 byte limit"):
        load_config(str(big))


def test_dev_null_is_the_empty_config(tmp_path):
    """``--config=/dev/null`` means no config, as with upstream; other devices stay refused."""
    assert load_config(os.devnull, must_exist=True).warnings == []
    link = tmp_path / "nfd-worker.conf"
    link.symlink_to(os.devnull)
    assert load_config(str(link)).warnings == []
    with pytest.raises(ConfigError, match="character device"):
        load_config("/dev/zero")
