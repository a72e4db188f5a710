"""``make bench``: every benchmark module under bench/ that defines main()."""

from __future__ import annotations

import importlib
import pkgutil

import bench


def run_all() -> None:
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda i: i.name):
        if info.name.startswith("bench_"):
            module = importlib.import_module(f"bench.{info.name}")
            print(f"== {info.name}", flush=True)
            module.main()


if __name__ == "__main__":
    run_all()
