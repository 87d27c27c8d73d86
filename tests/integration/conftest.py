"""Integration fixtures: one stack of real processes per test module."""

from __future__ import annotations

import pytest

from tests.support.stack import Stack


@pytest.fixture(scope="module")
def stack(redis_url, tmp_path_factory):
    s = Stack(redis_url, tmp_path_factory.mktemp("logs")).start(workers=1, concurrency=4)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(autouse=True)
def _clear_faults(request):
    if "stack" in request.fixturenames:
        request.getfixturevalue("stack").faults()
    yield
