"""The ``db`` fixture: one database-like object per implementation in ``implementations.IMPLEMENTATIONS``."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.implementations import IMPLEMENTATIONS


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Any]:
    with IMPLEMENTATIONS[request.param](tmp_path) as database:
        yield database
