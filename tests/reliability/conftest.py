"""The reliability suite: real processes, injected faults, the sandbox's own counts as the truth.

CI runs the bounded sizes; ``VEXORA_RELIABILITY_FULL=1`` runs the full ones. Each scenario adds
one figure line (``tests/support/figures.py``; the ``figures`` fixture is the root conftest's).
Every test here is ``slow`` (``tests/conftest.py``): the quick set leaves the suite out.
"""

from __future__ import annotations

import pytest

from tests.support.figures import FULL


@pytest.fixture(scope="session")
def full_size() -> bool:
    return FULL


def size(bounded: int, full: int) -> int:
    return full if FULL else bounded

