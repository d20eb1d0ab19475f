"""``Collections.CreatePayloadIndex`` and ``Collections.DropPayloadIndex``: the embedded
``create_payload_index`` / ``drop_payload_index`` (``engine.payload_index_admin``) over the wire,
mixed into the Collections servicer, so the HTTP gateway serves them at their gRPC paths too."""
from __future__ import annotations

from typing import Any

from .status import handle_errors
from .v1 import collections_pb2


class PayloadIndexMethods:
    db: Any
    info: Any

    @handle_errors
    def CreatePayloadIndex(self, request, context):
        col = self.db.get_collection(request.collection)
        changed = col.create_payload_index(request.field, request.kind)
        return collections_pb2.PayloadIndexResponse(changed=changed, info=self.info(col))

    @handle_errors
    def DropPayloadIndex(self, request, context):
        col = self.db.get_collection(request.collection)
        col.drop_payload_index(request.field)
        return collections_pb2.PayloadIndexResponse(changed=True, info=self.info(col))
