"""The database core: Database, Collection, segments, filters and query planning."""
from .errors import *  # noqa: F401,F403  (the error hierarchy is part of the API)
from .collection import Collection
from .database import Database
from .filters import compile_filter
from .results import GetResult, Hit, QueryResult

__all__ = ["Database", "Collection", "compile_filter", "QueryResult", "GetResult", "Hit"]
