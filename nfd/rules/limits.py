"""Size limits on rule input, checked while loading (``load_rules``) and so in every
path that loads rules: ``nfd validate``/``nfd dryrun``, custom.d files in nfd-worker and
NodeFeatureRule objects in nfd-master.

No legitimate rule comes near them (a NodeFeatureRule object cannot exceed the API
server's 1.5 MiB anyway); they make an oversized input a quick, clear error instead of
minutes of parsing and gigabytes of memory. docs/rules.md lists them.
"""

from __future__ import annotations

# Rule text (YAML/JSON) given to load_rules, checked before it is parsed.
MAX_RULE_TEXT_BYTES = 1 << 20
# Rules in one NodeFeatureRule object, one spec, one list, and in one load_rules call.
MAX_RULES = 10_000
# Feature terms of one rule: its matchFeatures and all of its matchAny elements together.
MAX_TERMS_PER_RULE = 1_000
# matchAny elements of one rule.
MAX_MATCH_ANY = 1_000
# matchExpressions of one feature term.
MAX_EXPRESSIONS_PER_TERM = 1_000
# matchExpressions of one rule, over all of its terms.
MAX_EXPRESSIONS_PER_RULE = 10_000
# Values of one expression (In, NotIn, InRegexp).
MAX_EXPRESSION_VALUES = 10_000
# labelsTemplate and varsTemplate, each, in UTF-8 bytes.
MAX_TEMPLATE_BYTES = 64 * 1024
# A rule name, a feature name and a matchExpressions key, in characters.
MAX_NAME_LENGTH = 1_024
