"""``python -m tests.golden regen [tree ...]``: rewrite the golden files."""

from __future__ import annotations

import sys

from tests.golden import TREES, regen


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "regen" or any(t not in TREES for t in argv[1:]):
        print(f"usage: python -m tests.golden regen [{' | '.join(TREES)} ...]", file=sys.stderr)
        return 2
    return regen(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
