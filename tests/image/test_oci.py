"""hack/oci.py, the OCI archive writer, on small inputs (no root, no build): the layout
`ctr images import` reads, digests that match their blobs, the name deploy/ asks for, and
the runtime config taken from the Dockerfile."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import sys
import tarfile
import zlib
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.test_dockerfile import stages

REPO = Path(__file__).resolve().parents[2]


def load_oci() -> ModuleType:
    spec = importlib.util.spec_from_file_location("nfd_hack_oci", REPO / "hack" / "oci.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


oci = load_oci()


def blob(archive: tarfile.TarFile, digest: str) -> bytes:
    algorithm, _, hexdigest = digest.partition(":")
    assert algorithm == "sha256"
    member = archive.extractfile(f"blobs/sha256/{hexdigest}")
    assert member is not None
    data = member.read()
    assert hashlib.sha256(data).hexdigest() == hexdigest, f"{digest} does not match its blob"
    return data


def read_image(path: Path, layer: bool = True) -> tuple[dict, dict, dict, int]:
    """(index, manifest, config, uncompressed layer size), every digest and size checked
    (the layer's only when `layer`)."""
    with tarfile.open(path) as archive:
        assert json.loads(archive.extractfile("oci-layout").read()) == {  # type: ignore[union-attr]
            "imageLayoutVersion": "1.0.0"
        }
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
        (entry,) = index["manifests"]
        manifest_bytes = blob(archive, entry["digest"])
        assert len(manifest_bytes) == entry["size"]
        manifest = json.loads(manifest_bytes)
        config_bytes = blob(archive, manifest["config"]["digest"])
        assert len(config_bytes) == manifest["config"]["size"]
        config = json.loads(config_bytes)
        (desc,) = manifest["layers"]
        assert desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        if not layer:
            return index, manifest, config, 0
        member = archive.extractfile("blobs/sha256/" + desc["digest"].split(":", 1)[1])
        assert member is not None
        compressed, plain, size = hashlib.sha256(), hashlib.sha256(), 0
        decompressor = zlib.decompressobj(wbits=31)  # gzip
        while chunk := member.read(1 << 20):
            compressed.update(chunk)
            data = decompressor.decompress(chunk)
            plain.update(data)
            size += len(data)
        assert decompressor.eof
        assert "sha256:" + compressed.hexdigest() == desc["digest"]
        assert member.tell() == desc["size"]
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:" + plain.hexdigest()]}
    return index, manifest, config, size


def layer_members(path: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(path) as archive:
        index = json.loads(archive.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(archive, index["manifests"][0]["digest"]))
        digest = manifest["layers"][0]["digest"]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(archive, digest)))) as layer:
            return {m.name: m for m in layer.getmembers()}


def test_archive_is_an_oci_layout_with_the_containerd_name(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "hello").write_text("#!/bin/sh\necho hello\n")
    (root / "bin" / "hello").chmod(0o755)
    (root / "bin" / "hi").hardlink_to(root / "bin" / "hello")
    (root / "sh").symlink_to("bin/hello")
    runtime = oci.RuntimeConfig(env={"A": "1"}, user="65534:65534", cmd=["hello"])
    out = tmp_path / "out" / "image.tar"
    oci.write_archive(root, runtime, "nfd:0.1.0", out)

    index, manifest, config, _ = read_image(out)
    assert index["manifests"][0]["annotations"] == {
        "io.containerd.image.name": "docker.io/library/nfd:0.1.0",
        "org.opencontainers.image.ref.name": "0.1.0",
    }
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert config["config"] == {"Env": ["A=1"], "User": "65534:65534", "Cmd": ["hello"]}
    members = layer_members(out)
    assert list(members) == sorted(members), "layer entries are not in a stable order"
    assert members["bin/hello"].mode & 0o777 == 0o755
    assert members["bin/hi"].islnk() and members["bin/hi"].linkname == "bin/hello"
    assert members["sh"].issym() and members["sh"].linkname == "bin/hello"
    assert all(m.uname == "" and m.gname == "" for m in members.values())
    assert not list(out.parent.glob("*.partial")) and not list(out.parent.glob(".oci-*"))


@pytest.mark.parametrize(
    ("name", "reference"),
    [
        ("nfd", "docker.io/library/nfd:latest"),
        ("nfd:0.1.0", "docker.io/library/nfd:0.1.0"),
        ("me/nfd:1", "docker.io/me/nfd:1"),
        ("registry.example.com/nfd:1", "registry.example.com/nfd:1"),
        ("localhost/nfd", "localhost/nfd:latest"),
        ("host:5000/nfd", "host:5000/nfd:latest"),
    ],
)
def test_references_are_normalised_as_the_kubelet_does(name: str, reference: str) -> None:
    assert oci.normalized_reference(name) == reference


def test_the_name_is_what_the_default_overlay_gives_the_pods() -> None:
    """`image: nfd` in the manifests, rewritten by the base's images: entry; the kubelet
    normalises the result (docker.io/library/...) before it looks in containerd."""
    yaml = pytest.importorskip("yaml")
    kustomization = yaml.safe_load((REPO / "deploy/base/kustomization.yaml").read_text())
    (entry,) = [i for i in kustomization["images"] if i["name"] == "nfd"]
    expected = f"docker.io/library/{entry['newName']}:{entry['newTag']}"
    assert oci.deploy_image_name(REPO / "deploy/base/kustomization.yaml", "nfd") == expected
    for manifest in ("worker-daemonset.yaml", "master-deployment.yaml"):
        text = (REPO / "deploy/base" / manifest).read_text()
        assert "image: nfd\n" in text, f"{manifest} no longer says image: nfd"


def test_a_kustomization_without_the_image_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "kustomization.yaml"
    path.write_text("images:\n  - name: other\n    newTag: '1'\n")
    with pytest.raises(ValueError, match="no images: entry named 'nfd'"):
        oci.deploy_image_name(path, "nfd")


def test_runtime_config_is_the_dockerfiles_final_stage() -> None:
    """oci.py's reading of the Dockerfile agrees with the Dockerfile tests' own parser."""
    runtime = oci.final_stage_config((REPO / "Dockerfile").read_text())
    final = stages()[-1]
    env: dict[str, str] = {}
    for word, args in final:
        if word == "ENV":
            env.update(dict(pair.split("=", 1) for pair in args.split()))
    assert runtime.env == env
    assert runtime.user == [a for w, a in final if w == "USER"][-1]
    assert runtime.workdir == [a for w, a in final if w == "WORKDIR"][-1]
    assert runtime.cmd == json.loads([a for w, a in final if w == "CMD"][-1])
    assert runtime.entrypoint == json.loads([a for w, a in final if w == "ENTRYPOINT"][-1])
    assert runtime.labels["org.opencontainers.image.title"] == "nfd"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM x\nCMD nfd-worker --help\n", "only the JSON exec form"),
        ("FROM x\nENV A 1\n", "only the KEY=VALUE form"),
        ("FROM x\nENV A=1 \\\n", "continuation line"),
        ("# nothing\n", "no FROM"),
    ],
)
def test_unsupported_dockerfile_forms_are_named(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        oci.final_stage_config(text)
