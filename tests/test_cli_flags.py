"""Command-line spellings (nfd/cli/flags.py): argparse, plus upstream's Go ``flag`` forms."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfd.cli import nfd as nfd_cli
from nfd.cli.flags import FlagParser, go_bool
from nfd.cli.worker import build_parser, labels_json, parse_args


def usage_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """The ``error:`` line nfd-worker prints for ``argv``, which must exit 2."""
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: nfd-worker ")
    return err.strip().splitlines()[-1]


def test_defaults_without_arguments(monkeypatch):
    monkeypatch.delenv("NFD_HOST_PREFIX", raising=False)
    opts = parse_args([])
    assert (opts.host_prefix, opts.oneshot, opts.no_publish, opts.metrics, opts.verbose) == (
        "/",
        False,
        False,
        8080,  # upstream v0.19's -port default (v0.16's 8081 with a gRPC-era flag)
        0,
    )
    assert opts.server == "nfd-master:8080"


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
    opts = parse_args(argv)
    assert (opts.host_prefix, opts.oneshot, opts.metrics) == ("/host-", True, 0)


@pytest.mark.parametrize("value", ["false", "False", "FALSE", "f", "F", "0"])
def test_go_boolean_false(value):
    assert parse_args(["--oneshot", f"--oneshot={value}"]).oneshot is False
    assert parse_args([f"-no-publish={value}"]).no_publish is False


@pytest.mark.parametrize("value", ["true", "True", "TRUE", "t", "T", "1"])
def test_go_boolean_true(value):
    assert go_bool(value) is True
    assert parse_args([f"-oneshot={value}"]).oneshot is True


@pytest.mark.parametrize(
    ("argv", "level"),
    [(["-v"], 1), (["-vv"], 2), (["-vvv"], 3), (["-v", "--verbose"], 2), (["-v=3"], 3)],
)
def test_verbosity(argv, level):
    assert parse_args(argv).verbose == level


def test_a_value_may_start_with_a_dash_when_attached():
    assert parse_args(["--label-sources=-cpu,all"]).label_sources == "-cpu,all"
    assert parse_args(["-label-sources=-cpu"]).label_sources == "-cpu"


def test_environment_replaces_the_default(monkeypatch):
    monkeypatch.setenv("NFD_HOST_PREFIX", "/from-env/")
    assert parse_args([]).host_prefix == "/from-env/"
    assert parse_args(["--host-prefix=/flag/"]).host_prefix == "/flag/"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--nope"], "unrecognized arguments: --nope"),
        (["-nope=1"], "unrecognized arguments: -nope=1"),
        (["positional"], "unrecognized arguments: positional"),
        (["--metrics"], "argument --metrics: expected one argument"),
        (["--metrics", "--oneshot"], "argument --metrics: expected one argument"),
        (["--metrics=x"], "argument --metrics: invalid int value: 'x'"),
        (["--oneshot=maybe"], "argument --oneshot: invalid boolean value: 'maybe'"),
        (["-v=lots"], "argument -v/--verbose: invalid count value: 'lots'"),
        # No prefix abbreviations, as in Go: in either spelling.
        (["--onesh"], "unrecognized arguments: --onesh"),
        (["-onesh"], "unrecognized arguments: -onesh"),
    ],
)
def test_usage_errors_say_what_is_wrong(capsys, argv, message):
    assert usage_error(capsys, argv) == f"nfd-worker: error: {message}"


def test_operands_after_a_double_dash_are_not_flags(capsys):
    assert "--oneshot" in usage_error(capsys, ["--", "--oneshot"])


def test_help_lists_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["-help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for action in build_parser()._actions:
        for name in action.option_strings:
            assert name in out
    assert "NFD worker" in out
    assert "--oneshot [BOOL]" in out and "(also =true / =false)" in out


@pytest.mark.parametrize("spelling", ["--version", "-version"])
def test_version(capsys, spelling):
    with pytest.raises(SystemExit) as exit_info:
        parse_args([spelling])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("nfd-worker ")


def test_subcommands_take_go_spellings_too():
    """``nfd export labels`` shares the worker's discovery options and their spellings."""
    args = nfd_cli.build_parser().parse_args(
        ["export", "labels", "-host-prefix=/h/", "-label-sources=cpu", "-vv"]
    )
    assert (args.what, args.host_prefix, args.label_sources, args.verbose) == (
        "labels",
        "/h/",
        "cpu",
        2,
    )


def test_short_options_keep_argparse_behaviour():
    parser = FlagParser(prog="t")
    parser.add_argument("--path", "-p")
    parser.add_argument("--name")
    assert parser.parse_args(["-p", "x"]).path == "x"
    assert parser.parse_args(["-px"]).path == "x"
    assert parser.parse_args(["-path=y", "-name", "z"]).path == "y"


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), st.text(), max_size=8))
def test_labels_json_is_one_line_of_sorted_json(labels):
    text = labels_json(labels)
    assert "\n" not in text
    assert json.loads(text) == labels
    assert list(json.loads(text)) == sorted(labels)
