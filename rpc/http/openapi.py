"""The OpenAPI 3.1 document of the HTTP API, generated from the message and service descriptors."""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from ... import __version__
from .gateway import Gateway, Method
from .routes import Alias

_REF = "#/components/schemas/"
_VECTOR = {"oneOf": [{"type": "array", "items": {"type": "number"}},
                     {"type": "string", "contentEncoding": "base64",
                      "description": "little-endian float32 values, base64"}]}
#: JSON schemas of the types jsoncodec writes plainly.
SHOAL_SCHEMAS: dict[str, dict[str, Any]] = {
    "shoal.v1.PointId": {"oneOf": [{"type": "integer", "format": "int64"}, {"type": "string", "minLength": 1}],
                         "description": "a record id: an integer or a non-empty string"},
    "shoal.v1.Vectors": {"description": "an array of vectors or one vector; a vector is an array of numbers or "
                                        "base64 of little-endian float32. Also {dim, packed|values}.",
                         "oneOf": [{"type": "array", "items": _VECTOR}, _VECTOR,
                                   {"type": "object", "properties": {
                                       "dim": {"type": "integer"}, "packed": {"type": "string"},
                                       "values": {"type": "array", "items": {"type": "number"}}}}]},
    "shoal.v1.Metadata": {"type": "object", "additionalProperties": True, "description": "a JSON object"},
    "shoal.v1.Value": {"description": "any JSON value"},
    "shoal.v1.Filter": {"type": "object", "description": "the filter language: {\"field\": value} for equality, "
                        "{\"field\": {\"$gt\": v}} with $eq $ne $gt $gte $lt $lte $in $nin $exists, and $and, $or, $not"},
}
_SCALARS = {
    FieldDescriptor.CPPTYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.CPPTYPE_INT64: {"type": "integer", "format": "int64"},
    FieldDescriptor.CPPTYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    FieldDescriptor.CPPTYPE_UINT64: {"type": "integer", "format": "int64", "minimum": 0},
    FieldDescriptor.CPPTYPE_FLOAT: {"type": "number"},
    FieldDescriptor.CPPTYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.CPPTYPE_BOOL: {"type": "boolean"},
}
_ERROR = {"type": "object", "properties": {"error": {"type": "object", "properties": {
    "code": {"type": "string", "description": "the gRPC status name, e.g. NOT_FOUND"},
    "class": {"type": ["string", "null"], "description": "the ShoalError class, e.g. CollectionNotFoundError"},
    "message": {"type": "string"}, "http_status": {"type": "integer"}}}}}


def _field_schema(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        return {"type": "object", "additionalProperties": _single(field.message_type.fields_by_name["value"], schemas)}
    single = _single(field, schemas)
    return {"type": "array", "items": single} if field.is_repeated else single


def _single(field: FieldDescriptor, schemas: dict[str, Any]) -> dict[str, Any]:
    if field.message_type is not None:
        _add_message(field.message_type, schemas)
        return {"$ref": _REF + field.message_type.full_name}
    if field.cpp_type == FieldDescriptor.CPPTYPE_ENUM:
        return {"type": "string", "enum": list(field.enum_type.values_by_name)}
    if field.type == FieldDescriptor.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return dict(_SCALARS.get(field.cpp_type, {"type": "string"}))


def _add_message(desc: Descriptor, schemas: dict[str, Any]) -> None:
    if desc.full_name in schemas:
        return
    if desc.full_name in SHOAL_SCHEMAS:
        schemas[desc.full_name] = SHOAL_SCHEMAS[desc.full_name]
        return
    schemas[desc.full_name] = schema = {"type": "object", "additionalProperties": False, "properties": {}}
    for field in desc.fields:
        schema["properties"][field.name] = _field_schema(field, schemas)


def _operation(method: Method, schemas: dict[str, Any], summary: str, body: bool, alias: Alias | None = None
               ) -> dict[str, Any]:
    _add_message(method.request_class.DESCRIPTOR, schemas)
    _add_message(method.response_class.DESCRIPTOR, schemas)
    request = {"$ref": _REF + method.request_class.DESCRIPTOR.full_name}
    response = {"$ref": _REF + method.response_class.DESCRIPTOR.full_name}
    if method.client_streaming:
        request = {"type": "array", "items": request}
    op: dict[str, Any] = {
        "operationId": (f"{alias.verb.lower()}_{re.sub(r'[^A-Za-z0-9]+', '_', alias.path).strip('_')}" if alias
                        else f"{method.service.split('.')[-1]}_{method.name}"),
        "summary": summary, "tags": [method.service.split(".")[-1]],
        "description": f"Calls gRPC `{method.path}`." + (" URL parameters fill the request fields of the same name."
                                                        if alias else ""),
        "responses": {"200": {"description": "OK", "content": {
            "application/x-ndjson" if method.server_streaming else "application/json": {"schema": response}}},
            "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}}}},
    }
    params = re.findall(r"{(\w+)}", alias.path) if alias else []
    if params:
        op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}} for p in params]
    if body:
        op["requestBody"] = {"required": False, "content": {"application/json": {"schema": request}}}
    return op


def openapi_document(gateway: Gateway, aliases: Iterable[Alias], auth: bool) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": _ERROR}
    paths: dict[str, Any] = {}
    for alias in aliases:
        method = gateway.find(alias.service, alias.method_name)
        if method is not None:
            paths.setdefault(alias.path, {})[alias.verb.lower()] = _operation(
                method, schemas, alias.summary, alias.verb in ("POST", "PUT"), alias)
    for method in gateway.methods.values():
        paths[method.path] = {"post": _operation(method, schemas, f"{method.service}.{method.name}", True)}
    paths["/healthz"] = {"get": {"operationId": "health", "summary": "SERVING, or 503 while shutting down",
                                 "security": [], "responses": {"200": {"description": "serving"},
                                                               "503": {"description": "shutting down"}}}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Shoal HTTP API", "version": __version__,
                 "description": "JSON over HTTP onto the shoal.v1 gRPC services (same handlers, same errors). "
                                "Every method is at POST /<package>.<Service>/<Method>; common calls also have "
                                "the resource-style routes below."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}}},
    }
    if auth:
        doc["security"] = [{"bearer": []}, {"apiKey": []}]
    return doc
