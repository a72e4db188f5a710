"""The functions rule templates can call: Go's builtins and Sprig's, as upstream.

Upstream registers ``sprig.TxtFuncMap()`` minus ``env``, ``expandenv`` and
``getHostByName``. Each family lives in its own module; ``FUNCS`` is their union.
Semantics follow Sprig v3 (Masterminds/semver v3 constraints, Go's path, net/url,
fmt and time packages, mergo for merges).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nfd.rules.template.funcs.builtins import BUILTINS
from nfd.rules.template.funcs.conversion import CONVERSIONS
from nfd.rules.template.funcs.crypto import CRYPTO
from nfd.rules.template.funcs.dates import DATES
from nfd.rules.template.funcs.lists import LISTS
from nfd.rules.template.funcs.paths import PATHS
from nfd.rules.template.funcs.semver import SEMVER
from nfd.rules.template.funcs.strings import STRINGS

_FAMILIES = (BUILTINS, STRINGS, CONVERSIONS, LISTS, SEMVER, PATHS, DATES, CRYPTO)

FUNCS: dict[str, Callable[..., Any]] = {}
for _family in _FAMILIES:
    # No function is defined twice: a later family must not silently replace one.
    assert not FUNCS.keys() & _family.keys()
    FUNCS.update(_family)

__all__ = ["FUNCS"]
