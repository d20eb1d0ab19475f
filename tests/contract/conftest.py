"""The ``db`` fixture: one database-like object per implementation in ``implementations.IMPLEMENTATIONS``."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract.implementations import IMPLEMENTATIONS, close_shared_cluster


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def db(request: pytest.FixtureRequest, tmp_path) -> Iterator[Any]:
    with IMPLEMENTATIONS[request.param](tmp_path) as database:
        yield database


@pytest.fixture(scope="module", autouse=True)
def _stop_shared_cluster() -> Iterator[None]:
    yield
    close_shared_cluster()


#: Contract tests that run against the Ray cluster in the default suite. Every Ray collection starts
#: one actor process per shard (about 6 s a collection on 2 cores), so the other tests run against
#: Ray with the slow campaigns (``make test-all``); by default tests/cluster compares each record call
#: of a RayCollection with a single collection's on the same data.
RAY_BY_DEFAULT = {"test_scroll_is_stable_while_writes_continue", "test_update_changes_only_what_is_given",
                  "test_collection_metadata_get_or_create_and_rename", "test_common_errors_are_the_same_class"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("db") == "ray" \
                and getattr(item, "originalname", item.name) not in RAY_BY_DEFAULT:
            item.add_marker(pytest.mark.slow)
