"""The fuzz suite records its runs in the reliability results file (see
tests/reliability/recording.py and docs/reliability.md)."""

from __future__ import annotations

import sys
from pathlib import Path

_REPO_ROOT = str(Path(__file__).resolve().parents[2])
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.reliability.recording import pytest_runtest_makereport, record  # noqa: E402,F401
