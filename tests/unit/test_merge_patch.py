"""The status is written as a JSON merge patch: removed fields must really go away."""

from __future__ import annotations

import pytest

from modelship.kube.storage import merge_patch

from .enginesim import merged

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ({"a": 1, "rollout": {"aborted": {"revision": "x"}}}, {"a": 1}),
        ({"stableTemplate": {"image": "i", "env": [{"name": "A"}]}}, {"stableTemplate": {"image": "j"}}),
        ({"conditions": [{"type": "A"}, {"type": "B"}]}, {"conditions": [{"type": "B"}]}),
        ({}, {"phase": "Healthy", "rollout": {"canary": {"revision": "y", "weight": 0}}}),
        ({"phase": "Healthy"}, {"phase": "Healthy"}),
    ],
)
def test_merge_patch_turns_old_into_new(old: dict[str, object], new: dict[str, object]) -> None:
    patch = merge_patch(old, new)
    assert merged(old, patch) == new
    assert (patch == {}) == (old == new)
