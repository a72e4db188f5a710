"""Shared hypothesis settings and the example counter for the report."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tests.reliability.recording import Record

# NFD_FUZZ_EXAMPLES raises the count for a longer fuzzing session.
EXAMPLES = int(os.environ.get("NFD_FUZZ_EXAMPLES", "300"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)


def count(record: Record, title: str) -> None:
    """One generated example: the first call names the row, each call counts a run."""
    if not record.title:
        record.category, record.title, record.runs = "fuzz", title, 0
    record.runs += 1


# Text that looks like what parsers meet: lines, separators, numbers, odd bytes.
pieces = st.sampled_from(
    [
        "\n",
        "=",
        ":",
        "\t",
        " ",
        '"',
        "'",
        "#",
        "0x",
        "-1",
        "99999999999999999999",
        "y",
        "m",
        "CONFIG_",
        "flags",
        "processor",
        "\x00",
        "\ufeff",
        "\udcff",
        "é",
        "\r\n",
        "\\",
        "{{",
        "}}",
        "²",  # str.isdigit() is true, int() refuses it
        "١",  # Arabic-Indic digit: int() accepts it
    ]
)
texty = st.lists(st.one_of(pieces, st.text(max_size=12)), max_size=40).map("".join)
any_text = st.one_of(st.text(max_size=400), texty)
