"""The worker's built-in static rules (upstream's static_features.go)."""

from __future__ import annotations

from nfd.rules.expression import MatchExpression
from nfd.rules.model import FeatureTerm, Rule


def static_rules() -> list[Rule]:
    """``rdma.capable`` (a Mellanox PCI device) and ``rdma.available`` (RDMA modules loaded)."""
    return [
        Rule(
            name="RDMA capable static rule",
            labels={"rdma.capable": "true"},
            match_features=[
                FeatureTerm("pci.device", {"vendor": MatchExpression("In", ("15b3",))})
            ],
            origin="built-in",
        ),
        Rule(
            name="RDMA available static rule",
            labels={"rdma.available": "true"},
            match_features=[
                FeatureTerm(
                    "kernel.loadedmodule",
                    {
                        "ib_uverbs": MatchExpression("Exists"),
                        "rdma_ucm": MatchExpression("Exists"),
                    },
                )
            ],
            origin="built-in",
        ),
    ]
