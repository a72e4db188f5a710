"""hack/image.sh's interface and its cache: what it prints, and which edits rebuild.

The key tests run the script in a throwaway git copy of the files it reads, so editing a
source file there never disturbs the work tree other tests read."""

from __future__ import annotations

import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from tests.image.conftest import image_script

REPO = Path(__file__).resolve().parents[2]
INPUTS = ("hack", "Dockerfile", "pyproject.toml", "README.md", "protos", "nfd", "deploy/base")


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    for name in INPUTS:
        src, dest = REPO / name, root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "_proto"))
        else:
            shutil.copy2(src, dest)
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], check=True)
    return root


def key(root: Path) -> str:
    result = subprocess.run(
        ["bash", str(root / "hack" / "image.sh"), "key"],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(root), "PY": str(REPO / ".venv/bin/python")},
    )
    return result.stdout.strip()


def test_the_key_follows_every_input_and_nothing_else(copy: Path) -> None:
    base = key(copy)
    assert len(base) == 16 and key(copy) == base, "the key is not stable"
    # Generated code, bytecode and ignored files never go into the wheel.
    (copy / "nfd" / "_proto").mkdir()
    (copy / "nfd" / "_proto" / "x_pb2.py").write_text("x = 1\n")
    (copy / "nfd" / "__pycache__").mkdir()
    (copy / "nfd" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    assert key(copy) == base
    edits = {
        "nfd/__init__.py": "# edited\n",
        "nfd/brand_new.py": "x = 1\n",  # untracked: still in the wheel
        "protos/labeler.proto": "// edited\n",
        "hack/image-requirements.txt": "# edited\n",
        "hack/image-prune.py": "# edited\n",
        "Dockerfile": "# edited\n",
        "deploy/base/kustomization.yaml": "",  # the name: newTag edited below
    }
    for path, text in edits.items():
        file = copy / path
        original = file.read_text() if file.exists() else None
        if path.endswith("kustomization.yaml"):
            file.write_text(original.replace("newTag: 0.1.0", "newTag: 0.1.1"))  # type: ignore[union-attr]
        else:
            file.write_text((original or "") + text)
        assert key(copy) != base, f"editing {path} does not change the key"
        if original is None:
            file.unlink()
        else:
            file.write_text(original)
        assert key(copy) == base, f"restoring {path} does not restore the key"


def test_a_second_build_with_unchanged_inputs_takes_seconds(image_archive: Path) -> None:
    """Stated bound: a cache hit in under 10 s (it is ~0.2 s)."""
    start = time.monotonic()
    again = image_script("build")
    assert Path(again) == image_archive
    assert time.monotonic() - start < 10


def test_name_and_pause_name(image_name: str, pause_name: str) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert image_name == f"docker.io/library/nfd:{version}"
    assert pause_name.startswith("docker.io/library/nfd-pause:")


def test_an_unknown_command_says_what_is_accepted() -> None:
    result = subprocess.run(
        [str(REPO / "hack" / "image.sh"), "frobnicate"], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "build|name|pause|pause-name" in result.stderr
