"""Servicer methods of the record API (issue 19): scroll, exists, partial updates, range search,
recommend, get-or-create and rename.

They are mixed into the servicers of ``rpc/server.py`` (one class per gRPC service), so each is a
proper ``shoal.v1`` method that any transport calling the servicer (the HTTP/JSON gateway) gets as
is. Every method decodes its request, calls the one embedded method of that name, and encodes the
result; the semantics live in the engine (``engine.records``, ``engine.search_modes``).
"""
from __future__ import annotations

from typing import Any

from . import convert
from .status import handle_errors
from .v1 import points_pb2, search_pb2

optional_filter = convert.optional_filter


def _include(request: Any) -> tuple[str, ...]:
    return (("metadata",) if request.include_metadata else ()) + (("vector",) if request.include_vectors else ())


def _selection(request: Any) -> list[Any] | None:
    return convert.ids_from_proto(request.ids) if request.by_ids else None


class CollectionsExtras:
    """``Collections.GetOrCreate`` and ``Collections.Rename``."""

    db: Any

    @handle_errors
    def GetOrCreate(self, request, context):
        from ..index.options import check_option_names

        options = convert.metadata_from_proto(request.index_options)
        check_option_names(options)
        given = dict(options)
        if request.HasField("metadata"):
            given["metadata"] = convert.metadata_from_proto(request.metadata)
        col = self.db.get_or_create_collection(request.name, request.dim, request.metric or None,
                                               request.index or None, **given)
        return self.info(col)

    @handle_errors
    def Rename(self, request, context):
        return self.info(self.db.rename_collection(request.name, request.new_name))


class PointsExtras:
    """``Points.Scroll``, ``Exists``, ``Update``, ``SetMetadata`` and ``DeleteMetadataKeys``."""

    db: Any

    @handle_errors
    def Scroll(self, request, context):
        col = self.db.get_collection(request.collection)
        cursor = convert.ids_from_proto([request.cursor])[0] if request.HasField("cursor") else None
        page = col.scroll(optional_filter(request), request.limit or 100, cursor, _include(request))
        response = points_pb2.ScrollResponse()
        convert.get_result_to_proto(page.records, col.dim, response.records)
        if page.next_cursor is not None:
            response.next_cursor.CopyFrom(convert.ids_to_proto([page.next_cursor])[0])
        return response

    @handle_errors
    def Exists(self, request, context):
        col = self.db.get_collection(request.collection)
        return points_pb2.ExistsResponse(exists=col.exists(convert.ids_from_proto(request.ids)))

    @handle_errors
    def Update(self, request, context):
        col = self.db.get_collection(request.collection)
        vectors = convert.vectors_from_proto(request.vectors) if request.HasField("vectors") else None
        metadata = [convert.metadata_from_proto(m) for m in request.metadata] if request.has_metadata else None
        return points_pb2.UpdateResponse(updated=col.update(convert.ids_from_proto(request.ids), vectors=vectors,
                                                            metadata=metadata))

    @handle_errors
    def SetMetadata(self, request, context):
        col = self.db.get_collection(request.collection)
        return points_pb2.UpdateResponse(updated=col.set_metadata(
            _selection(request), optional_filter(request), values=convert.metadata_from_proto(request.values)))

    @handle_errors
    def DeleteMetadataKeys(self, request, context):
        col = self.db.get_collection(request.collection)
        return points_pb2.UpdateResponse(updated=col.delete_metadata_keys(
            _selection(request), optional_filter(request), keys=list(request.keys)))


class SearchExtras:
    """``Search.SearchRange`` and ``Search.Recommend``, and the per-batch search options."""

    db: Any

    @staticmethod
    def search_options(batch: Any) -> dict[str, Any]:
        """``score_threshold`` / ``group_by`` / ``group_size`` of a QueryBatch as ``Collection.search`` keywords."""
        options: dict[str, Any] = {}
        if batch.HasField("score_threshold"):
            options["score_threshold"] = batch.score_threshold
        if batch.group_by:
            options.update(group_by=batch.group_by, group_size=batch.group_size or 1)
        return options

    @handle_errors
    def SearchRange(self, request, context):
        col = self.db.get_collection(request.collection)
        results = col.search_range(convert.vectors_from_proto(request.vectors), request.radius,
                                   optional_filter(request), request.limit or None,
                                   convert.params_from_proto(request.params), ("distance", *_include(request)))
        response = search_pb2.SearchResponse()
        for res in results:
            convert.query_result_to_proto(res, response.results.add())
        return response

    @handle_errors
    def Recommend(self, request, context):
        col = self.db.get_collection(request.collection)
        positive = [*convert.ids_from_proto(request.positive_ids), *_vectors(request, "positive_vectors")]
        negative = [*convert.ids_from_proto(request.negative_ids), *_vectors(request, "negative_vectors")]
        res = col.recommend(positive, negative, request.k or 10, optional_filter(request),
                            convert.params_from_proto(request.params), ("distance", *_include(request)),
                            score_threshold=request.score_threshold if request.HasField("score_threshold") else None)
        response = search_pb2.SearchResponse()
        convert.query_result_to_proto(res, response.results.add())
        return response


def _vectors(request: Any, field: str) -> list[Any]:
    msg = getattr(request, field)
    return list(convert.vectors_from_proto(msg, field)) if msg.dim else []
