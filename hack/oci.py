"""OCI image archives written without a container engine or registry (hack/image.sh).

    oci.py archive --root DIR --name REF --out FILE [--dockerfile F] [--env K=V ...]
                   [--user U] [--workdir D] [--entrypoint JSON] [--cmd JSON]
    oci.py name KUSTOMIZATION IMAGE     # the reference the manifests ask for, normalised
    oci.py config-of FILE               # print the image config JSON inside an archive

An archive is a tar of an OCI image layout (oci-layout, index.json, blobs/sha256/...) with
one gzip layer made from DIR; `ctr images import` takes it as is. The index names the image
with the `io.containerd.image.name` annotation (the full reference, which containerd uses
verbatim) and `org.opencontainers.image.ref.name` (its tag, for skopeo/podman).

With --dockerfile the runtime settings (ENV, USER, WORKDIR, ENTRYPOINT, CMD, LABEL) come from
the Dockerfile's final stage, so the engine-less image and the Dockerfile's cannot drift apart.
Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import shlex
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
CONTAINERD_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


class Hashing(io.RawIOBase):
    """A write-only stream that counts and hashes what passes through to `sink`."""

    def __init__(self, sink: IO[bytes] | gzip.GzipFile | None) -> None:
        self.sink = sink
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += len(view)
        if self.sink is not None:
            self.sink.write(view)
        return len(view)

    @property
    def digest(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def normalized_reference(name: str) -> str:
    """What containerd and the kubelet call `name`: `nfd:0.1.0` is docker.io/library/nfd:0.1.0."""
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if ":" not in name.rsplit("/", 1)[-1] and "@" not in name:
        name += ":latest"
    return name


# ------------------------------------------------------------------------------ Dockerfile


@dataclass
class RuntimeConfig:
    """The runtime part of an image config, as a Dockerfile's final stage sets it."""

    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def dockerfile_instructions(text: str) -> Iterator[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments and blank lines dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        word, _, rest = (pending + line).partition(" ")
        pending = ""
        yield word.upper(), rest.strip()
    if pending:
        raise ValueError("the Dockerfile ends in a continuation line")


def _pairs(args: str, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for word in shlex.split(args):
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} {args!r}: only the KEY=VALUE form is supported")
        out[key] = value
    return out


def _exec_form(args: str, what: str) -> list[str]:
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} {args!r}: only the JSON exec form is supported")
    return value


def final_stage_config(text: str) -> RuntimeConfig:
    """The runtime settings of the Dockerfile's last stage (from its last FROM on)."""
    stage: list[tuple[str, str]] = []
    for word, args in dockerfile_instructions(text):
        if word == "FROM":
            stage = []
        stage.append((word, args))
    if not stage:
        raise ValueError("the Dockerfile has no FROM")
    config = RuntimeConfig()
    for word, args in stage:
        if word == "ENV":
            config.env.update(_pairs(args, "ENV"))
        elif word == "LABEL":
            config.labels.update(_pairs(args, "LABEL"))
        elif word == "USER":
            config.user = args
        elif word == "WORKDIR":
            config.workdir = args
        elif word == "ENTRYPOINT":
            config.entrypoint = _exec_form(args, "ENTRYPOINT")
        elif word == "CMD":
            config.cmd = _exec_form(args, "CMD")
    return config


# ---------------------------------------------------------------------------------- layers


def _layer_filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # The runtime provides /dev; device nodes in a layer are refused by rootless
    # snapshotters and never used. Numeric owners only: the image's /etc/passwd decides.
    if info.isdev() or info.isfifo():
        return None
    info.uname = info.gname = ""
    return info


def write_layer(root: Path, blob: IO[bytes]) -> tuple[str, str, int]:
    """Write `root` as a gzip tar layer to `blob`; return (diff_id, digest, size)."""
    compressed = Hashing(blob)
    with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=1) as gz:
        plain = Hashing(gz)
        with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for entry in sorted(os.listdir(root)):
                tar.add(root / entry, arcname=entry, filter=_layer_filter)
    return plain.digest, compressed.digest, compressed.size


# --------------------------------------------------------------------------------- archive


def _json_bytes(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def image_config(runtime: RuntimeConfig, diff_id: str, history: str) -> dict[str, object]:
    config: dict[str, object] = {"Env": [f"{k}={v}" for k, v in runtime.env.items()]}
    if runtime.user:
        config["User"] = runtime.user
    if runtime.workdir:
        config["WorkingDir"] = runtime.workdir
    if runtime.entrypoint:
        config["Entrypoint"] = runtime.entrypoint
    if runtime.cmd:
        config["Cmd"] = runtime.cmd
    if runtime.labels:
        config["Labels"] = runtime.labels
    return {
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": history}],
    }


def write_archive(root: Path, runtime: RuntimeConfig, name: str, out: Path) -> None:
    reference = normalized_reference(name)
    tag = reference.rsplit(":", 1)[1]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".oci-") as tmp:
        blobs = Path(tmp) / "blobs" / "sha256"
        blobs.mkdir(parents=True)

        def put(data: bytes) -> tuple[str, int]:
            digest = hashlib.sha256(data).hexdigest()
            (blobs / digest).write_bytes(data)
            return "sha256:" + digest, len(data)

        layer_tmp = blobs / "layer.partial"
        with layer_tmp.open("wb") as blob:
            diff_id, layer_digest, layer_size = write_layer(root, blob)
        layer_tmp.rename(blobs / layer_digest.split(":", 1)[1])
        config_digest, config_size = put(
            _json_bytes(image_config(runtime, diff_id, f"hack/image.sh: {root.name}"))
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": MEDIA_MANIFEST,
            "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
            "layers": [{"mediaType": MEDIA_LAYER_GZIP, "digest": layer_digest, "size": layer_size}],
        }
        manifest_digest, manifest_size = put(_json_bytes(manifest))
        index = {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": manifest_digest,
                    "size": manifest_size,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {CONTAINERD_NAME: reference, REF_NAME: tag},
                }
            ],
        }
        (Path(tmp) / "index.json").write_bytes(_json_bytes(index))
        (Path(tmp) / "oci-layout").write_bytes(_json_bytes({"imageLayoutVersion": "1.0.0"}))
        partial = out.with_name(out.name + ".partial")
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for entry in ("oci-layout", "index.json", "blobs"):
                tar.add(Path(tmp) / entry, arcname=entry, filter=_archive_filter)
        partial.rename(out)


def _archive_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


# ------------------------------------------------------------------------------- reading


def read_blob(archive: tarfile.TarFile, digest: str) -> bytes:
    member = archive.extractfile("blobs/sha256/" + digest.split(":", 1)[1])
    if member is None:
        raise ValueError(f"{digest} is not a file in the archive")
    return member.read()


def config_of(path: Path) -> dict[str, Any]:
    with tarfile.open(path) as archive:
        index = json.loads(read_blob_named(archive, "index.json"))
        manifest = json.loads(read_blob(archive, index["manifests"][0]["digest"]))
        config: dict[str, Any] = json.loads(read_blob(archive, manifest["config"]["digest"]))
        return config


def read_blob_named(archive: tarfile.TarFile, name: str) -> bytes:
    member = archive.extractfile(name)
    if member is None:
        raise ValueError(f"{name} is not a file in the archive")
    return member.read()


# ------------------------------------------------------------------------------------ CLI


def deploy_image_name(kustomization: Path, image: str) -> str:
    """The reference `kubectl apply -k` gives pods for `image`: the kustomization's images:
    entry (newName/newTag) applied to it. Read with a regex to stay dependency-free; the
    entry is our own fixed format (name/newName/newTag lines)."""
    text = kustomization.read_text()
    block = re.search(r"^images:\n((?:[ \t]+.*\n?)+)", text, flags=re.MULTILINE)
    if block is None:
        raise ValueError(f"{kustomization}: no images: entry")
    for entry in re.split(r"^\s*-\s+", block.group(1), flags=re.MULTILINE):
        fields = dict(re.findall(r"(\w+):[ \t]*(\S+)", entry))
        if fields.get("name") == image:
            name = fields.get("newName", image)
            tag = fields.get("newTag")
            return normalized_reference(f"{name}:{tag}" if tag else name)
    raise ValueError(f"{kustomization}: no images: entry named {image!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oci.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    arc = sub.add_parser("archive", help="write an OCI image archive of one layer")
    arc.add_argument("--root", type=Path, required=True, help="directory that becomes the layer")
    arc.add_argument("--name", required=True, help="image reference (normalised)")
    arc.add_argument("--out", type=Path, required=True, help="archive to write")
    arc.add_argument("--dockerfile", type=Path, help="take ENV/USER/... from its final stage")
    arc.add_argument("--env", action="append", default=[], metavar="K=V", help="base env first")
    arc.add_argument("--user", help="USER (overrides the Dockerfile)")
    arc.add_argument("--workdir", help="WORKDIR (overrides the Dockerfile)")
    arc.add_argument("--entrypoint", type=json.loads, help="ENTRYPOINT as a JSON list")
    arc.add_argument("--cmd", type=json.loads, help="CMD as a JSON list")
    nam = sub.add_parser("name", help="the normalised reference a kustomization gives an image")
    nam.add_argument("kustomization", type=Path)
    nam.add_argument("image")
    cfg = sub.add_parser("config-of", help="print the image config inside an archive")
    cfg.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "name":
            print(deploy_image_name(args.kustomization, args.image))
        elif args.command == "config-of":
            print(json.dumps(config_of(args.archive), indent=2, sort_keys=True))
        else:
            runtime = RuntimeConfig(env=_pairs(" ".join(map(shlex.quote, args.env)), "--env"))
            if args.dockerfile:
                from_file = final_stage_config(args.dockerfile.read_text())
                runtime.env.update(from_file.env)
                for key in ("user", "workdir", "entrypoint", "cmd", "labels"):
                    setattr(runtime, key, getattr(from_file, key))
            for key in ("user", "workdir", "entrypoint", "cmd"):
                if getattr(args, key) is not None:
                    setattr(runtime, key, getattr(args, key))
            write_archive(args.root, runtime, args.name, args.out)
    except (OSError, ValueError) as err:
        print(f"oci.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
