"""The catalog without Ray. Ray restarts the catalog actor and retries its calls, so a change can run
twice: before the actor died (saved) and again in the restarted actor, which reads the saved file. A
retried call must answer what the first did, while a genuinely conflicting one still fails."""
from __future__ import annotations

import pytest

from shoal.cluster.catalog import Catalog
from shoal.engine.errors import CollectionExistsError, CollectionNotFoundError


def _spec(name: str, request: str) -> dict:
    return {"name": name, "shards": 2, "replicas": 1, "storage": {}, "request": request,
            "create": {"dim": 4, "metric": "l2", "index": "flat", "options": {}}}


def test_a_retried_add_returns_the_saved_spec_and_another_still_conflicts(tmp_path):
    first = Catalog(str(tmp_path)).add(_spec("a", "r1"))
    restarted = Catalog(str(tmp_path))  # the actor died after saving; Ray runs the call again here
    assert restarted.add(_spec("a", "r1")) == first and first["key"] == "a"
    with pytest.raises(CollectionExistsError):
        restarted.add(_spec("a", "r2"))  # another create of the same name
    assert list(restarted.list()) == ["a"]


def test_a_retried_rename_and_remove_succeed_once_saved(tmp_path):
    catalog = Catalog(str(tmp_path))
    catalog.add(_spec("a", "r1"))
    renamed = catalog.rename("a", "b", "a")
    restarted = Catalog(str(tmp_path))
    assert restarted.rename("a", "b", "a") == renamed == restarted.list()["b"]
    with pytest.raises(CollectionNotFoundError):
        restarted.rename("a", "c", "a")  # not a retry: "a" is gone and "c" is not it
    restarted.add(_spec("a", "r2"))  # a new collection takes the old name (key "a.1": "a" is b's key)
    restarted.remove("b", "a")
    again = Catalog(str(tmp_path))
    again.remove("b", "a")  # retried: no collection has key "a" any more
    assert list(again.list()) == ["a"] and again.list()["a"]["key"] == "a.1"
    with pytest.raises(CollectionNotFoundError):
        again.remove("b", "a.1")  # "b" is gone but a collection still has that key: not a retry
