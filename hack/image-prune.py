"""Remove from an installed image what nfd never imports, and keep pip's records true.

Run by the image's own interpreter at the end of both image builds (the Dockerfile and
hack/image.sh), so the two stay equal. kubernetes>=36 ships a second, asyncio copy of its
whole client (kubernetes/aio, ~68 MB of the image's ~250); nfd uses the synchronous client
only, and nothing outside kubernetes/aio imports it. Each removed tree is also dropped from
its distribution's RECORD, so every file RECORD lists is still there with its hash.
"""

from __future__ import annotations

import csv
import importlib.metadata
import shutil
import sys
from pathlib import Path

# distribution -> top-level paths (relative to site-packages) that nfd does not use
PRUNE = {"kubernetes": ("kubernetes/aio",)}


def prune(dist_name: str, prefixes: tuple[str, ...]) -> int:
    """Remove `prefixes` of `dist_name` and their RECORD rows; return how many rows went."""
    dist = importlib.metadata.distribution(dist_name)
    record = next(
        Path(str(dist.locate_file(f)))
        for f in dist.files or []
        if f.name == "RECORD" and f.parent.name.endswith(".dist-info")
    )
    for prefix in prefixes:
        tree = Path(str(dist.locate_file(prefix)))
        if not tree.is_dir():
            sys.exit(f"image-prune: {dist_name} has no {prefix}/: update PRUNE")
        shutil.rmtree(tree)
    with record.open(newline="") as f:
        rows = list(csv.reader(f))
    kept = [row for row in rows if not row[0].startswith(tuple(p + "/" for p in prefixes))]
    with record.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(kept)
    return len(rows) - len(kept)


def main() -> None:
    for dist_name, prefixes in PRUNE.items():
        count = prune(dist_name, prefixes)
        print(f"image-prune: {dist_name}: removed {', '.join(prefixes)} ({count} files)")


if __name__ == "__main__":
    main()
