"""The worker's flag parser (nfd/cli/flags.py): spellings, errors, help, argparse parity."""

from __future__ import annotations

import argparse
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfd.cli import flags
from nfd.cli.flags import Flag, UsageError, parse
from nfd.cli.worker import WORKER_FLAGS, labels_json, parse_args

TABLE = (
    Flag("--host-prefix", default="/", env="TEST_NFD_PREFIX", help="where the host is"),
    Flag("--oneshot", kind="bool", help="once"),
    Flag("--metrics", kind="int", default=8081, help="port"),
    Flag("-v", "--verbose", kind="count", help="more"),
)


def test_defaults_without_arguments():
    opts = parse(TABLE, [])
    assert (opts.host_prefix, opts.oneshot, opts.metrics, opts.verbose) == ("/", False, 8081, 0)


@pytest.mark.parametrize(
    "argv",
    [
        ["--host-prefix=/host-", "--oneshot", "--metrics=0"],
        ["--host-prefix", "/host-", "--oneshot", "--metrics", "0"],
        ["-host-prefix=/host-", "-oneshot", "-metrics=0"],  # Go's flag package
        ["-host-prefix", "/host-", "-oneshot=true", "-metrics", "0"],
    ],
)
def test_gnu_and_go_spellings(argv):
    opts = parse(TABLE, argv)
    assert (opts.host_prefix, opts.oneshot, opts.metrics) == ("/host-", True, 0)


@pytest.mark.parametrize("value", ["false", "False", "FALSE", "f", "F", "0"])
def test_go_boolean_false(value):
    assert parse(TABLE, ["--oneshot", f"--oneshot={value}"]).oneshot is False


@pytest.mark.parametrize(
    ("argv", "level"), [(["-v"], 1), (["-vv"], 2), (["-v", "--verbose"], 2), (["-v=3"], 3)]
)
def test_verbosity(argv, level):
    assert parse(TABLE, argv).verbose == level


def test_a_value_may_start_with_a_dash_when_attached():
    table = (Flag("--label-sources"),)
    assert parse(table, ["--label-sources=-cpu,all"]).label_sources == "-cpu,all"


def test_environment_replaces_the_default(monkeypatch):
    monkeypatch.setenv("TEST_NFD_PREFIX", "/from-env/")
    assert parse(TABLE, []).host_prefix == "/from-env/"
    assert parse(TABLE, ["--host-prefix=/flag/"]).host_prefix == "/flag/"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unrecognized arguments: --nope"),
        (["positional"], "unrecognized arguments: positional"),
        (["--", "--oneshot"], "unrecognized arguments: --oneshot"),
        (["--metrics"], "argument --metrics: expected one argument"),
        (["--metrics", "--oneshot"], "argument --metrics: expected one argument"),
        (["--metrics=x"], "argument --metrics: invalid int value: 'x'"),
        (["--oneshot=maybe"], "argument --oneshot: invalid boolean value: 'maybe'"),
        (["-v=lots"], "argument -v: invalid count value: 'lots'"),
        (["--onesh"], "unrecognized arguments: --onesh"),  # no abbreviations, as Go
    ],
)
def test_usage_errors_say_what_is_wrong(argv, message):
    with pytest.raises(UsageError) as err:
        parse(TABLE, argv)
    assert str(err.value) == message


def test_main_parse_exits_2_with_usage_on_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        flags.main_parse("prog", "A program", "1.0", TABLE, ["--nope"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: prog [-h] [--version] [--host-prefix HOST_PREFIX]")
    assert err.endswith("prog: error: unrecognized arguments: --nope\n")


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        flags.main_parse("nfd-worker", "NFD worker", "1.0", WORKER_FLAGS, ["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in WORKER_FLAGS:
        for name in flag.names:
            assert name in out
    assert "NFD worker" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        flags.main_parse("nfd-worker", "", "1.2.3", WORKER_FLAGS, ["-version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == "nfd-worker 1.2.3\n"


def test_argparse_from_the_same_table_agrees():
    """``nfd export`` declares the discovery flags through argparse: same dests, defaults."""
    parser = argparse.ArgumentParser()
    flags.add_to_argparse(parser, WORKER_FLAGS)
    argv = [
        "--host-prefix=/host-",
        "--config=/etc/x.conf",
        "--label-sources=-cpu",
        "--oneshot",
        "--metrics=0",
        "-vv",
    ]
    ours = vars(parse_args(argv))
    theirs = vars(parser.parse_args(argv))
    assert ours == theirs
    assert vars(parse_args([])) == vars(parser.parse_args([]))


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), st.text(), max_size=8))
def test_labels_json_is_json_dumps(labels):
    """The worker prints labels without the json module; the text must be json.dumps'."""
    assert labels_json(labels) == json.dumps(labels, sort_keys=True)
