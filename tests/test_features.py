"""nfd.features.Features.from_dict: element values as upstream's strings."""

from __future__ import annotations

from nfd.features import Features


def test_attribute_and_instance_values_become_strings() -> None:
    data = {
        "attributes": {
            "plain": {"elements": {"a": "1", "b": ""}},
            "mixed": {"elements": {"t": True, "f": False, "n": None, "i": 7, "s": "x"}},
        },
        "instances": {"dev": {"elements": [{"attributes": {"v": 1, "w": "2"}}, {}]}},
    }
    out = Features.from_dict(data)
    assert out.attributes["plain"] == {"a": "1", "b": ""}
    assert out.attributes["mixed"] == {"t": "true", "f": "false", "n": "", "i": "7", "s": "x"}
    assert out.instances["dev"] == [{"v": "1", "w": "2"}, {}]
    # A copy, not the parsed mapping itself.
    assert out.attributes["plain"] is not data["attributes"]["plain"]["elements"]
