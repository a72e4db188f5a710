"""The Dockerfile, checked by construction (no container engine here): a parse of its
instructions, plus the wheel build its first stage does, run for real."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.deploy.manifests import REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a continuation line"
    return out


def stages() -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for ins in instructions():
        if ins[0] == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def test_multi_stage_slim_python_base() -> None:
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.1[1-9][.\d]*-slim(-\w+)?", image), image
    assert all_stages[0][0][1].split()[-1] == "build"


def test_final_stage_installs_the_built_wheel_as_non_root() -> None:
    final = stages()[-1]
    users = [a for w, a in final if w == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    runs = " ".join(a for w, a in final if w == "RUN")
    assert "--no-index" in runs and "from=build" in runs
    for tool in ("nfd-worker", "nfd-master", "nfd ", "kubectl-nfd"):
        assert tool in runs, f"{tool} not checked in the image build"


def test_no_remote_add_or_unpinned_base() -> None:
    for word, args in instructions():
        assert word != "ADD", "use COPY; ADD fetches URLs and unpacks archives"
        assert "://" not in args or word == "LABEL", f"{word} {args}: fetches from a URL"
        if word == "FROM":
            assert ":latest" not in args


def test_dockerignore_lets_in_only_what_is_copied() -> None:
    copied = set()
    for word, args in instructions():
        if word == "COPY" and not args.startswith("--from"):
            copied.update(shlex.split(args)[:-1])
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert ignore[next(i for i, x in enumerate(ignore) if not x.startswith("#"))] == "*"
    assert {c.rstrip("/") for c in copied} == allowed
    for path in allowed:
        assert (REPO / path).exists(), path


def test_the_build_stage_makes_a_wheel_with_every_entry_point(tmp_path: Path) -> None:
    """What stage 1 does, in a copy of the build context: generate the gRPC code, build
    the wheel (without dependencies: no network in tests)."""
    context = tmp_path / "src"
    subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    )
    for name in ("pyproject.toml", "README.md", "protos", "hack/gen-proto.sh", "nfd"):
        src = REPO / name
        dest = context / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            subprocess.run(["cp", "-r", str(src), str(dest)], check=True, capture_output=True)
        else:
            subprocess.run(["cp", str(src), str(dest)], check=True)
    subprocess.run(["rm", "-rf", str(context / "nfd" / "_proto")], check=True)
    env = {"PY": sys.executable, "PATH": "/usr/bin:/bin"}
    gen = subprocess.run(
        ["bash", "hack/gen-proto.sh"], cwd=context, env=env, capture_output=True, text=True
    )
    assert gen.returncode == 0, gen.stderr
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), "."],
        cwd=context, capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    (wheel,) = (tmp_path / "wheels").glob("nfd-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = zf.read(entry_points).decode()
    assert any(n.startswith("nfd/_proto/") and n.endswith("_pb2.py") for n in names)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for script in ("nfd", "nfd-worker", "nfd-master", "kubectl-nfd"):
        assert f"{script} = {project['scripts'][script]}" in scripts
    if not names:
        pytest.fail("empty wheel")
