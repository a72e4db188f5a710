"""local source: upstream's features.d fixtures, directives, and hooks under limits."""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfd.features import Features
from nfd.hostfs import HostFS
from nfd.sources import SourceContext
from nfd.sources.local import (
    FEATURE_SET,
    LABEL_SET,
    SOURCE,
    parse_feature_text,
    read_feature_files,
    run_hooks,
)
from tests.fixture_paths import NFD_UPSTREAM

FIXTURES = NFD_UPSTREAM / "source" / "local" / "testdata" / "features.d"
NOW = datetime(2026, 7, 1, tzinfo=UTC)


def test_upstream_fixtures_give_7_features_and_8_labels() -> None:
    parsed = read_feature_files(str(FIXTURES), NOW)
    assert parsed.features == {
        "featureKeyRandomComment": "featureValue",
        "my-feature": "value",
        "foo": "baz",
        "featureKey2": "featureValue2",
        "featureKey3": "featureValue3",
        "featureKeyUnparsable": "featureValue",
        "featureKeyValid": "featureValue",
    }
    assert parsed.labels == {
        "featureKeyRandomComment": "featureValue",
        "label-only": "value",
        "label-only-2": "value",
        "my-feature": "value",
        "featureKey2": "featureValue2",
        "featureKey3": "featureValue3",
        "featureKeyUnparsable": "featureValue",
        "featureKeyValid": "featureValue",
    }
    assert "hiddenFeatureKey" not in parsed.labels  # .my.feature is hidden
    assert "featureKeyValid2" not in parsed.labels  # big_file is over 64 KiB
    warnings = "\n".join(parsed.warnings)
    assert "big_file" in warnings and "limit" in warnings
    assert "unparsable_expiry_comment:1" in warnings


def test_source_discover_and_labels() -> None:
    ctx = SourceContext(HostFS("/"), {"featuresDir": str(FIXTURES), "hooksEnabled": False})
    features = SOURCE.discover(ctx)
    assert len(features.attributes[FEATURE_SET]) == 7
    assert len(features.attributes[LABEL_SET]) == 8
    labels = SOURCE.labels(features, ctx)
    assert labels == features.attributes[LABEL_SET]
    assert SOURCE.labels(Features(), ctx) == {}
    assert SOURCE.priority == 20 and SOURCE.prefix_labels is False


def test_directives_and_bad_lines() -> None:
    text = "\n".join(
        [
            "plain",
            "  spaced = x  ",
            "vendor.io/ns=1",
            "eq=a=b",
            "empty=",
            "=novalue",
            "# +expiry-time=2020-01-01T00:00:00Z",
            "expired",
            "# +expiry-time=2099-01-01T00:00:00+02:00",
            "fresh",
            "# +expiry-time=not-a-time",
            "still-fresh",
            "# +no-label",
            "raw-only=1",
            "# +no-feature",
            "label-only=2",
            "after=3",
            "# + Something",
            "# +random-key=x",
            "# ordinary comment",
        ]
    )
    parsed = parse_feature_text(text, "f", NOW)
    assert parsed.labels == {
        "plain": "true",
        "spaced ": " x",
        "vendor.io/ns": "1",
        "eq": "a=b",
        "empty": "",
        "fresh": "true",
        "still-fresh": "true",
        "label-only": "2",
        "after": "3",
    }
    assert "raw-only" in parsed.features and "label-only" not in parsed.features
    assert "expired" not in parsed.features
    warnings = "\n".join(parsed.warnings)
    assert "f:6: empty feature name" in warnings
    assert "f:11: invalid expiry-time" in warnings
    assert "f:18: unknown directive" in warnings and "f:19: unknown directive" in warnings


def test_files_order_hidden_and_limits(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("k=from-a\nonly-a\n")
    (tmp_path / "b").write_text("k=from-b\n")
    (tmp_path / ".hidden").write_text("h\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x").write_text("nested\n")
    (tmp_path / "big").write_bytes(b"x\n" * 40000)
    (tmp_path / "binary").write_bytes(b"ok=1\n\xff\xfe=2\n")
    parsed = read_feature_files(str(tmp_path), NOW)
    assert parsed.labels["k"] == "from-b"
    assert "only-a" in parsed.labels and "ok" in parsed.labels
    assert "h" not in parsed.labels and "nested" not in parsed.labels and "x" not in parsed.labels
    assert read_feature_files(str(tmp_path / "missing"), NOW).labels == {}


def test_entries_that_are_not_small_regular_files_are_named_and_skipped(tmp_path: Path) -> None:
    (tmp_path / "zz-good").write_text("good=1\n")
    os.mkfifo(tmp_path / "fifo")  # an open without O_NONBLOCK would block for ever
    (tmp_path / "dir.conf").mkdir()
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    os.symlink("/dev/zero", tmp_path / "zero")
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB that costs no disk: refused by its size alone
    parsed = read_feature_files(str(tmp_path), NOW)
    assert parsed.labels == {"good": "1"}
    by_name = {Path(w.split(":")[0]).name: w for w in parsed.warnings}
    assert by_name.keys() == {"fifo", "dir.conf", "loop-a", "loop-b", "zero", "sparse"}
    assert "a FIFO, not a regular file, file skipped" in by_name["fifo"]
    assert "a directory, not a regular file" in by_name["dir.conf"]
    assert "symlink loop" in by_name["loop-a"]
    assert "a character device" in by_name["zero"]
    assert f"{1 << 30} bytes is over the 65536 byte limit, file skipped" in by_name["sparse"]


def test_file_longer_than_its_size_is_read_only_up_to_the_limit(tmp_path: Path) -> None:
    # procfs files report size 0 and go on and on, like a file that grows while read.
    if not os.access("/proc/kallsyms", os.R_OK):
        pytest.skip("needs a readable /proc/kallsyms")
    os.symlink("/proc/kallsyms", tmp_path / "kallsyms")
    parsed = read_feature_files(str(tmp_path), NOW)
    assert parsed.labels == {}
    assert parsed.warnings == [
        f"{tmp_path}/kallsyms: over the 65536 byte limit when read (the file is growing), "
        "file skipped"
    ]


# -- hooks -------------------------------------------------------------------


def hook(directory: Path, name: str, body: str, mode: int = 0o755) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(mode)
    return path


def test_hook_output_is_parsed_and_environment_is_clean(tmp_path: Path) -> None:
    hook(
        tmp_path,
        "good",
        'echo "from-hook=1"\necho "# +no-label"\necho raw\n'
        'echo "home=${HOME:-unset}"\nread line || echo "stdin=closed"\necho oops >&2\n',
    )
    parsed = run_hooks(str(tmp_path), 5, 65536, NOW)
    assert parsed.labels == {"from-hook": "1", "home": "unset", "stdin": "closed"}
    assert parsed.features["raw"] == "true"


def test_hanging_hook_is_killed_with_its_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hook(tmp_path, "hang", f"sleep 300 &\necho $! > {pidfile}\necho early=1\nsleep 300\n")
    hook(tmp_path, "ok", "echo fine=1\n")
    start = time.monotonic()
    parsed = run_hooks(str(tmp_path), 1.0, 65536, NOW)
    elapsed = time.monotonic() - start
    assert elapsed < 1.0 + 1.0, elapsed
    assert parsed.labels == {"fine": "1"}  # the hung hook costs only its own output
    assert any("hook hang: killed after 1s timeout" in w for w in parsed.warnings)
    child = int(pidfile.read_text())
    time.sleep(0.2)
    try:
        os.kill(child, 0)
        # A zombie reaped by init is fine; a live sleeper is not.
        state = Path(f"/proc/{child}/stat").read_text().split()[2]
        assert state == "Z", f"background child {child} survived"
    except (ProcessLookupError, FileNotFoundError):
        pass


def test_flooding_hook_is_cut_off(tmp_path: Path) -> None:
    hook(tmp_path, "flood", "head -c 10000000 /dev/zero | tr '\\0' 'a'\necho end=1\n")
    hook(tmp_path, "ok", "echo fine=1\n")
    start = time.monotonic()
    parsed = run_hooks(str(tmp_path), 10.0, 65536, NOW)
    assert time.monotonic() - start < 5
    assert parsed.labels == {"fine": "1"}
    assert any("hook flood: output over 65536 bytes" in w for w in parsed.warnings)


def test_failing_hook_keeps_other_hooks(tmp_path: Path) -> None:
    hook(tmp_path, "a-fails", "echo lost=1\nexit 1\n")
    hook(tmp_path, "b-ok", "echo kept=1\n")
    hook(tmp_path, "c-noexec", "echo never=1\n", mode=0o644)
    hook(tmp_path, "d-garbage", "printf '=\\n\\377\\376\\nvalid=2\\n'\n")
    (tmp_path / ".hidden").write_text("#!/bin/sh\necho hidden=1\n")
    (tmp_path / ".hidden").chmod(0o755)
    parsed = run_hooks(str(tmp_path), 5, 65536, NOW)
    assert parsed.labels == {"kept": "1", "valid": "2"}
    warnings = "\n".join(parsed.warnings)
    assert "hook a-fails: failed with exit status 1" in warnings
    assert "hook c-noexec: not executable" in warnings
    assert "hook d-garbage:1: empty feature name" in warnings


def test_hook_leftovers_are_killed_even_after_setsid(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    hook(
        tmp_path,
        "daemon",
        f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' </dev/null >/dev/null 2>&1 &\n"
        f"while [ ! -s {pidfile} ]; do sleep 0.02; done\necho daemon=1\n",
    )
    parsed = run_hooks(str(tmp_path), 5, 65536, NOW)
    assert parsed.labels == {"daemon": "1"}  # the hook itself succeeded
    assert parsed.warnings == ["hook daemon: 1 process(es) it left running were killed"]
    assert not Path(f"/proc/{int(pidfile.read_text())}").exists()


def test_hook_that_closes_stdout_and_stays_is_killed_at_the_timeout(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hook(
        tmp_path,
        "closes",
        f"echo lost=1\nexec >&- 2>&-\nsleep 300 &\necho $! > {pidfile}\nexec sleep 300\n",
    )
    start = time.monotonic()
    parsed = run_hooks(str(tmp_path), 1.0, 65536, NOW)
    assert time.monotonic() - start < 1.0 + 2.0
    assert parsed.labels == {}
    # The leftover child may be reported too (before or after): the timeout is what counts.
    assert any("hook closes: killed after 1s timeout" in w for w in parsed.warnings)
    if pidfile.exists():  # a loaded machine may kill the hook before it got that far
        assert not Path(f"/proc/{int(pidfile.read_text())}").exists()


def test_hook_writing_stderr_without_end_is_cut_off(tmp_path: Path) -> None:
    hook(tmp_path, "noisy", "echo lost=1\nexec yes noise >&2\n")
    hook(tmp_path, "ok", "echo some stderr >&2\necho fine=1\n")
    start = time.monotonic()
    parsed = run_hooks(str(tmp_path), 10.0, 65536, NOW)
    assert time.monotonic() - start < 5  # cut at the cap, not at the timeout
    assert parsed.labels == {"fine": "1"}
    assert parsed.warnings == ["hook noisy: stderr over 1048576 bytes, killed, output discarded"]


def test_all_hooks_together_stay_within_the_total_timeout(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        hook(tmp_path, name, f"echo {name}=1\nexec sleep 300\n")
    hook(tmp_path, "d", "echo d=1\n")
    start = time.monotonic()
    parsed = run_hooks(str(tmp_path), 1.0, 65536, NOW, total_timeout=1.5)
    assert time.monotonic() - start < 1.5 + 1.5
    assert parsed.labels == {}
    warnings = "\n".join(parsed.warnings)
    assert "hook a: killed after 1s timeout" in warnings
    # b gets what a left of the 1.5s (about 0.5s; less on a loaded machine).
    assert re.search(
        r"hook b: killed after 0\.[0-9]s, what was left of hooksTotalTimeout 1\.5s", warnings
    )
    for name in ("c", "d"):
        assert f"hook {name}: not run, all hooks together used up their 1.5s" in warnings


def test_hook_entries_that_are_not_regular_files(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    os.symlink("loop", tmp_path / "loop")
    (tmp_path / "noshebang").write_bytes(b"\x7fELF-not-really")
    (tmp_path / "noshebang").chmod(0o755)
    hook(tmp_path, "ok", "echo fine=1\n")
    parsed = run_hooks(str(tmp_path), 5, 65536, NOW)
    assert parsed.labels == {"fine": "1"}
    assert parsed.warnings == [
        "hook dir: a directory, not a regular file, skipped",
        "hook fifo: a FIFO, not a regular file, skipped",
        "hook loop: symlink loop (too many levels of symbolic links), skipped",
        "hook noshebang: cannot execute: Exec format error",
    ]


def test_hooks_override_files_and_can_be_disabled(tmp_path: Path) -> None:
    files, hooks = tmp_path / "features.d", tmp_path / "source.d"
    files.mkdir()
    hooks.mkdir()
    (files / "f").write_text("k=file\n")
    hook(hooks, "h", "echo k=hook\n")
    config = {"featuresDir": str(files), "hooksDir": str(hooks), "hookTimeout": "2s"}
    ctx = SourceContext(HostFS("/"), config)
    assert SOURCE.labels(SOURCE.discover(ctx), ctx) == {"k": "hook"}
    ctx = SourceContext(HostFS("/"), {**config, "hooksEnabled": False})
    assert SOURCE.labels(SOURCE.discover(ctx), ctx) == {"k": "file"}


def test_default_config_is_upstream_paths() -> None:
    config = SOURCE.default_config()
    assert config["featuresDir"] == "/etc/kubernetes/node-feature-discovery/features.d"
    assert config["hooksDir"] == "/etc/kubernetes/node-feature-discovery/source.d"
    assert config["hooksEnabled"] is True and config["hookTimeout"] == "10s"
    assert config["hooksTotalTimeout"] == "30s"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_feature_file_bytes_never_raise(data: bytes) -> None:
    parsed = parse_feature_text(data.decode("utf-8", "replace"), "prop", NOW)
    assert "" not in parsed.labels


def test_hostfs_reads_never_block_on_a_fifo(tmp_path: Path) -> None:
    # A captured or hostile host tree may hold FIFOs where sysfs has attributes.
    (tmp_path / "sys").mkdir()
    os.mkfifo(tmp_path / "sys" / "attr")
    host = HostFS(str(tmp_path))
    start = time.monotonic()
    assert host.read_bytes("sys/attr") in (None, b"")
    assert time.monotonic() - start < 1.0


def test_feature_files_past_the_total_budget_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nfd.sources.local as local

    monkeypatch.setattr(local, "MAX_TOTAL_SIZE", 100)
    for index in range(5):
        (tmp_path / f"f{index}").write_text(f"k{index}={'x' * 40}\n")
    parsed = read_feature_files(str(tmp_path), NOW)
    assert sorted(parsed.labels) == ["k0", "k1", "k2"]  # 3 x 44 bytes: over 100 after f2
    assert parsed.warnings == [
        f"{tmp_path}: over 100 bytes of feature files in all, 2 entries from f3 on skipped"
    ]
