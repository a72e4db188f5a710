"""nfd-master's command line."""

from __future__ import annotations

import pytest

from nfd.cli.master import build_parser, main, normalize_argv


def parse(*argv: str):  # type: ignore[no-untyped-def]
    return build_parser().parse_args(normalize_argv(list(argv)))


def test_defaults_follow_upstream() -> None:
    a = parse()
    assert (a.port, a.metrics, a.nfd_api_parallelism) == (8080, 8081, 10)
    assert a.enable_gpu_marking is True and a.enable_taints is False
    assert a.crd_controller is True and a.resync_period == 3600.0


def test_go_style_flags() -> None:
    a = parse("-port=9000", "-enable-taints", "-extra-label-ns=a.io,b.io", "-extra-label-ns=c.io")
    assert a.port == 9000 and a.enable_taints is True
    assert a.extra_label_ns == ["a.io,b.io", "c.io"]
    assert parse("--enable-gpu-marking=false").enable_gpu_marking is False
    assert parse("-featurerules-controller=false").crd_controller is False
    assert parse("-resync-period=90s").resync_period == 90.0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ca-file=x"], "must be given together"),
        (["--verify-node-name"], "--verify-node-name needs"),
        (["--nfd-api-parallelism=0"], "must be > 0"),
        (["--instance=-bad"], "--instance"),
        (["--no-publish", "--label-whitelist=("], "--label-whitelist"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(
    argv: list[str], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert main(argv) == 2
    assert message in caplog.text
