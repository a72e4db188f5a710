"""Go ``text/template`` for labelsTemplate and varsTemplate.

A from-scratch interpreter of the part of Go's template language that NFD rules use:
text and actions with ``{{-``/``-}}`` trimming, comments, ``if``/``else if``/``else``,
``range`` (with ``$i, $e :=``, ``break``, ``continue``, ``else``), ``with``/``else
with``, ``define``/``template``/``block``, variables, field chains, parenthesised
pipelines, Go's builtin functions and Sprig's (:mod:`.funcs`). Anything outside this
subset fails with a TemplateError that says what is not supported.

The modules import one way: ``lexer`` -> ``parser`` -> ``executor``, which calls the
function families in ``funcs``; ``values`` (Go value semantics) is below them all.
"""

from __future__ import annotations

from nfd.rules.template.executor import (
    MAX_EXEC_DEPTH,
    MAX_OUTPUT,
    MAX_TEMPLATE_SIZE,
    Template,
    expand_map,
)
from nfd.rules.template.funcs import FUNCS
from nfd.rules.template.funcs.common import strval
from nfd.rules.template.funcs.fmt import go_sprintf
from nfd.rules.template.parser import REMOVED_FUNCS, UNSUPPORTED_SPRIG
from nfd.rules.template.values import go_print, go_type, truth

__all__ = [
    "FUNCS",
    "MAX_EXEC_DEPTH",
    "MAX_OUTPUT",
    "MAX_TEMPLATE_SIZE",
    "REMOVED_FUNCS",
    "UNSUPPORTED_SPRIG",
    "Template",
    "expand_map",
    "go_print",
    "go_sprintf",
    "go_type",
    "strval",
    "truth",
]

# What upstream removed or we do not provide must never be callable.
assert not FUNCS.keys() & (REMOVED_FUNCS | UNSUPPORTED_SPRIG)
