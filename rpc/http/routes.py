"""Readable REST routes for the common calls, each an alias of one gRPC method.

Every method is served at its gRPC path (``POST /shoal.v1.Points/Upsert``); the aliases
below add resource-style URLs for curl users. An alias names its method and which body
fields come from the URL; it does nothing else, so it cannot drift from the gRPC semantics.
An alias whose method the server does not have (e.g. ``Points.Scroll`` before the proto
has it, or ``Query.Ask`` without ``--rag``) is simply not mounted.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ...engine.echo import shorten
from ...engine.errors import InvalidArgumentError

#: QueryBatch fields a search body may give at the top level for a single batch.
BATCH_FIELDS = ("vectors", "k", "filter", "params")


def search_shorthand(payload: Any) -> Any:
    """``{"vector": [...], "k": 5, "filter": ...}`` -> ``{"batches": [{"vectors": [...], "k": 5, ...}]}``.

    A body that already has ``batches`` is the SearchRequest itself and passes unchanged.
    """
    if not isinstance(payload, dict) or "batches" in payload:
        return payload
    payload = dict(payload)
    if "vector" in payload:
        if "vectors" in payload:
            raise InvalidArgumentError("give either vector or vectors, not both")
        payload["vectors"] = payload.pop("vector")
    batch = {key: payload.pop(key) for key in BATCH_FIELDS if key in payload}
    if batch:
        payload["batches"] = [batch]
    return payload


def stream_items(payload: Any) -> Any:
    """A client-streaming alias's body: a JSON array, or ``{"batches": [...]}``."""
    if isinstance(payload, dict) and set(payload) == {"batches"}:
        return payload["batches"]
    if not isinstance(payload, list):
        raise InvalidArgumentError(f"body must be a JSON array of upsert batches or {{\"batches\": [...]}}, "
                                   f"got {shorten(payload)}")
    return payload


@dataclass(frozen=True)
class Alias:
    verb: str
    path: str  # Starlette path; {name} parameters become request fields of that name
    method: str  # "shoal.v1.Service/Method"
    summary: str
    reshape: Callable[[Any], Any] | None = None

    @property
    def service(self) -> str:
        return self.method.split("/")[0]

    @property
    def method_name(self) -> str:
        return self.method.split("/")[1]


_C = "/v1/collections/{collection}"
ALIASES: tuple[Alias, ...] = (
    Alias("GET", "/v1/collections", "shoal.v1.Collections/List", "List collection names"),
    Alias("POST", "/v1/collections", "shoal.v1.Collections/Create", "Create a collection"),
    Alias("GET", "/v1/collections/{name}", "shoal.v1.Collections/Get", "Describe a collection"),
    Alias("DELETE", "/v1/collections/{name}", "shoal.v1.Collections/Drop", "Drop a collection"),
    Alias("PUT", f"{_C}/points", "shoal.v1.Points/Upsert", "Upsert points (ids, vectors, metadata)"),
    Alias("POST", f"{_C}/points", "shoal.v1.Points/Upsert", "Upsert points (ids, vectors, metadata)"),
    Alias("POST", f"{_C}/points/batches", "shoal.v1.Points/UpsertStream",
          "Upsert several batches in order (a JSON array of upsert bodies)", stream_items),
    Alias("POST", f"{_C}/points/get", "shoal.v1.Points/Get", "Get points by id"),
    Alias("POST", f"{_C}/points/delete", "shoal.v1.Points/Delete", "Delete points by ids and/or filter"),
    Alias("POST", f"{_C}/points/count", "shoal.v1.Points/Count", "Count points (optionally matching a filter)"),
    Alias("GET", f"{_C}/points/count", "shoal.v1.Points/Count", "Count all points"),
    Alias("POST", f"{_C}/points/scroll", "shoal.v1.Points/Scroll", "Page through points matching a filter"),
    Alias("POST", f"{_C}/points/update", "shoal.v1.Points/Update", "Update points' metadata or vectors"),
    Alias("POST", f"{_C}/points/exists", "shoal.v1.Points/Exists", "Which ids exist"),
    Alias("POST", f"{_C}/search", "shoal.v1.Search/Search",
          "Search: a SearchRequest, or one batch's fields (vector(s), k, filter, params) at the top level",
          search_shorthand),
    Alias("POST", f"{_C}/search/range", "shoal.v1.Search/SearchRange", "Points within a distance"),
    Alias("POST", f"{_C}/flush", "shoal.v1.Admin/Flush", "Flush a collection to disk"),
    Alias("POST", f"{_C}/compact", "shoal.v1.Admin/Compact", "Run the optimizer (merge, vacuum, index) now"),
    Alias("GET", f"{_C}/stats", "shoal.v1.Admin/Stats", "Collection statistics (segments, optimizer, planner)"),
    Alias("POST", "/v1/admin/flush", "shoal.v1.Admin/Flush", "Flush every collection"),
    Alias("POST", "/v1/admin/compact", "shoal.v1.Admin/Compact", "Optimize every collection"),
    Alias("POST", "/v1/admin/snapshot", "shoal.v1.Admin/Snapshot",
          "Snapshot the database into the server's snapshot directory ({\"path\": NAME})"),
    Alias("GET", "/v1/admin/stats", "shoal.v1.Admin/Stats", "Server statistics"),
    Alias("POST", "/v1/ask", "shoal.v1.Query/Ask", "Answer a question from a collection (NDJSON stream)"),
    Alias("POST", "/v1/embed", "shoal.v1.Query/Embed", "Embed texts"),
)
