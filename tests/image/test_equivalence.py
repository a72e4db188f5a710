"""The image hack/image.sh builds is the image the Dockerfile specifies.

How the two are kept equal (and why a test rather than generating one from the other: a
Dockerfile cannot run here, and Debian's python3 replaces the python:slim base, so neither
file can be derived from the other whole):
- one pinned dependency set, hack/image-requirements.txt, installed by both (`-c`);
- one prune script, hack/image-prune.py, run by both;
- the runtime settings (ENV, USER, WORKDIR, CMD, labels) read by hack/image.sh from the
  Dockerfile's final stage.
These tests check the built rootfs and config against that specification, parsed here
independently: the distributions and versions, every file pip recorded (with its hash),
our own package file for file against the tree, the entry points, the Python version, the
user, and what must not be in the image."""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.deploy.test_dockerfile import instructions, stages
from tests.image.test_oci import read_image

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "hack" / "image-requirements.txt"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages(rootfs: Path) -> Path:
    (site,) = rootfs.glob("usr/local/lib/python3.*/dist-packages")
    return site


def distributions(site: Path) -> dict[str, tuple[str, Path]]:
    """canonical name -> (version, dist-info directory), from each METADATA."""
    out: dict[str, tuple[str, Path]] = {}
    for info in site.glob("*.dist-info"):
        headers = (info / "METADATA").read_text().split("\n\n", 1)[0]
        fields = dict(re.findall(r"^(Name|Version): (.+)$", headers, flags=re.MULTILINE))
        out[canonical(fields["Name"])] = (fields["Version"], info)
    return out


def lock_pins() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = version
    return pins


def dockerfile_python() -> tuple[str, str]:
    """(minor version, Debian codename) of the Dockerfile's python:X.Y-slim-CODENAME base."""
    args = dict(a.split("=", 1) for w, a in instructions() if w == "ARG" and "=" in a)
    match = re.fullmatch(r"python:(3\.\d+)[.\d]*-slim-(\w+)", args["PYTHON_IMAGE"])
    assert match, args["PYTHON_IMAGE"]
    return match.group(1), match.group(2)


def test_the_installed_distributions_are_the_pinned_set(image_rootfs: Path) -> None:
    installed = {
        name: version for name, (version, _) in distributions(site_packages(image_rootfs)).items()
    }
    expected = lock_pins() | {"nfd": PYPROJECT["version"]}
    assert installed == expected


def test_every_file_pip_recorded_is_there_unchanged_and_nothing_else(image_rootfs: Path) -> None:
    site = site_packages(image_rootfs)
    recorded: set[Path] = set()
    for _, info in distributions(site).values():
        with (info / "RECORD").open(newline="") as f:
            for path, digest, _size in csv.reader(f):
                file = (site / path).resolve()
                recorded.add(file)
                assert file.is_file(), f"{info.name}: {path} is missing"
                if digest:
                    algorithm, _, want = digest.partition("=")
                    got = hashlib.new(algorithm, file.read_bytes()).digest()
                    assert base64.urlsafe_b64encode(got).rstrip(b"=").decode() == want, path
    present = {p.resolve() for p in site.rglob("*") if p.is_file()}
    assert present - recorded == set(), "files no distribution owns"


def test_our_package_is_the_tree_file_for_file(image_rootfs: Path) -> None:
    site = site_packages(image_rootfs)
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard", "nfd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    sources = {p for p in tracked if p.endswith(".py") and not p.startswith("nfd/_proto/")}
    in_image = {
        str(p.relative_to(site))
        for p in (site / "nfd").rglob("*.py")
        if not p.is_relative_to(site / "nfd" / "_proto")
    }
    assert in_image == sources
    for path in sources:
        assert (site / path).read_bytes() == (REPO / path).read_bytes(), path
    protos = {p.stem for p in (REPO / "protos").glob("*.proto")}
    for stem in protos:
        assert (site / "nfd" / "_proto" / f"{stem}_pb2.py").is_file()
        assert (site / "nfd" / "_proto" / f"{stem}_pb2_grpc.py").is_file()


def test_entry_points_run_the_images_own_python(image_rootfs: Path) -> None:
    _, info = distributions(site_packages(image_rootfs))["nfd"]
    text = (info / "entry_points.txt").read_text()
    scripts = dict(re.findall(r"^(\S+) = (\S+)$", text.split("[console_scripts]")[1], re.M))
    assert scripts == PYPROJECT["scripts"]
    for name in scripts:
        script = image_rootfs / "usr/local/bin" / name
        assert script.stat().st_mode & 0o111, f"{name} is not executable"
        assert script.read_text().splitlines()[0] == "#!/usr/bin/python3", name


def test_python_and_debian_are_the_dockerfiles(image_rootfs: Path) -> None:
    minor, codename = dockerfile_python()
    assert (image_rootfs / f"usr/bin/python{minor}").is_file()
    assert site_packages(image_rootfs).parent.name == f"python{minor}"
    os_release = (image_rootfs / "etc/os-release").read_text()
    assert f"VERSION_CODENAME={codename}\n" in os_release


def test_the_runtime_config_is_the_dockerfiles(image_archive: Path) -> None:
    _, _, config, _ = read_image(image_archive, layer=False)
    runtime = config["config"]
    final = stages()[-1]

    def last(word: str) -> str:
        return [a for w, a in final if w == word][-1]

    env = dict(item.split("=", 1) for item in runtime["Env"])
    for word, args in final:
        if word == "ENV":
            for pair in args.split():
                key, _, value = pair.partition("=")
                assert env[key] == value, key
    assert env["PATH"].startswith("/usr/local/bin:") or "/usr/local/bin" in env["PATH"]
    assert runtime["User"] == last("USER") == "65534:65534"
    assert runtime["WorkingDir"] == last("WORKDIR")
    assert runtime["Cmd"] == json.loads(last("CMD"))
    assert runtime.get("Entrypoint", []) == json.loads(last("ENTRYPOINT"))
    labels = dict(re.findall(r'(\S+)="([^"]*)"', last("LABEL")))
    assert runtime["Labels"] == labels
    assert config["architecture"] == "amd64" and config["os"] == "linux"


def test_the_dockerfile_installs_the_same_pinned_set_and_prune() -> None:
    build, final = stages()[0], stages()[-1]
    copies = [a for w, a in build if w == "COPY"]
    assert "hack/image-requirements.txt /wheels/image-requirements.txt" in copies
    assert "hack/image-prune.py /wheels/image-prune.py" in copies
    build_runs = " ".join(a for w, a in build if w == "RUN")
    final_runs = " ".join(a for w, a in final if w == "RUN")
    assert "-c /wheels/image-requirements.txt" in build_runs
    assert "--no-index" in final_runs and "-c /wheels/image-requirements.txt" in final_runs
    assert "python /wheels/image-prune.py" in final_runs
    assert "pip uninstall -y pip setuptools wheel" in final_runs


def test_the_lock_covers_the_dependencies_of_pyproject() -> None:
    pins = lock_pins()
    wanted = PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["master"]
    for requirement in wanted:
        name = canonical(re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0])
        assert name in pins, f"{requirement} is not pinned in {LOCK.name}: hack/image.sh lock"


def test_nothing_a_running_image_does_not_need(image_rootfs: Path) -> None:
    root = image_rootfs
    for tool in ("gcc", "cc", "c++", "make", "pip", "pip3"):
        assert not (root / "usr/bin" / tool).exists(), tool
        assert not (root / "usr/local/bin" / tool).exists(), tool
    for name in ("pip", "setuptools", "wheel", "grpcio-tools"):
        assert name not in distributions(site_packages(root))
    assert not list(root.glob("usr/lib/python3/dist-packages/*")), "Debian Python packages"
    docs = [p for p in (root / "usr/share/doc").rglob("*") if p.is_file()]
    assert all(p.name == "copyright" for p in docs), "docs other than licences"
    for empty in ("usr/share/man", "usr/share/info", "usr/share/locale", "var/lib/apt/lists"):
        assert not [p for p in (root / empty).rglob("*") if p.is_file() and p.name != "lock"]
    assert not [p for p in (root / "var/cache/apt").rglob("*") if p.is_file()]
    assert not [p for p in (root / "tmp").iterdir()], "build leftovers in /tmp"
    assert not list(root.rglob("*.whl")), "wheels"
    for build_input in ("pyproject.toml", "gen-proto.sh", "image-requirements.txt"):
        assert not [p for p in root.rglob(build_input) if not p.is_symlink()], build_input
    assert not list(root.rglob("nfd.proto")) and not list(root.rglob("*.proto"))


def test_nothing_in_the_image_belongs_to_or_is_writable_by_its_user(image_rootfs: Path) -> None:
    """nfd runs as 65534 with a read-only root; nothing it could change, outside /tmp."""
    passwd = (image_rootfs / "etc/passwd").read_text()
    assert re.search(r"^nobody:x:65534:65534:", passwd, flags=re.M)
    for path in (image_rootfs / "usr").rglob("*"):
        if path.is_symlink():
            continue
        info = path.lstat()
        assert info.st_uid == 0, path
        assert not info.st_mode & 0o002, f"{path} is world-writable"


@pytest.mark.parametrize("limit_mib", [260])
def test_the_image_stays_small(image_archive: Path, limit_mib: int) -> None:
    """Stated bound: the uncompressed layer (the rootfs) under limit_mib MiB."""
    _, _, config, size = read_image(image_archive, layer=True)
    assert size < limit_mib * 2**20, f"{size / 2**20:.0f} MiB"
