"""Full-precision vectors on disk: ``create_collection(..., index="HNSW16", vectors_on_disk=True)``.

An index that walks on compact codes (HNSW on SQ8 codes: ``codes="sq8"``, or the default ``"auto"``,
which walks codes at every dimension when the vectors are on disk; ``SQ8``, ``PQ<m>``,
``IVF<n>,SQ8`` / ``IVF<n>,PQ<m>``) reads its full-precision copy of the vectors only to re-score
its final candidates exactly. With this option that copy stays memory-mapped from the segment's
index file instead of being read into memory; the graph or lists and the codes are loaded into
RAM as before. The operating system pages in the rows a re-scoring touches and may drop them
again, so a collection larger than RAM still answers with full-precision re-ranking (DiskANN's
idea), at the price of page faults when the rows are not in the page cache.

Needs a durable database (an in-memory collection has no file to map). The files are the same
in both layouts; the option only decides how an index file is opened (at open, and after a merge
has written one), and is persisted in the collection's manifest. A merge still copies the base
segment's index into memory while it extends it (``Index.copy``); the merged index is reopened
from its file once written.
"""
from __future__ import annotations

from typing import Any

from ..index.base import Index
from ..index.hnsw import HNSWIndex
from ..index.quantized import QuantizedIndex
from .errors import InvalidArgumentError

#: The array every code-walking family saves its full-precision vectors under (HNSW ``_x``,
#: the quantized families' re-ranking copy): the one left on disk.
ON_DISK_ARRAYS = ("vectors",)


def disk_walk_options(value: Any, template: Index) -> dict[str, Any]:
    """Index options the option implies: HNSW's default ``codes="auto"`` walks SQ8 codes at every
    dimension when the vectors are on disk (a float walk would read the mapped vectors at every
    step), so a collection keeps the walk it was created with whatever ``AUTO_SQ8_MIN_DIM`` is."""
    if value is True and isinstance(template, HNSWIndex) and template.codes == "auto" and not template.walks_codes:
        return {"codes": "sq8"}
    return {}


def check_vectors_on_disk(value: Any, template: Index, durable: bool) -> bool:
    """Validate the option against the collection's index family and store."""
    if not isinstance(value, bool):
        raise InvalidArgumentError(f"vectors_on_disk must be true or false, got {value!r}")
    if not value:
        return False
    if not durable:
        raise InvalidArgumentError("vectors_on_disk needs a durable database (shoal.Database(path)): an in-memory "
                                   "collection has no file to keep its vectors in")
    walks_codes = (isinstance(template, HNSWIndex) and template.walks_codes) or (
        isinstance(template, QuantizedIndex) and template.keep_vectors and template.code_size < 4 * template.dim)
    if not walks_codes:
        raise InvalidArgumentError(
            f"vectors_on_disk needs an index that searches compact codes and re-scores on the full vectors "
            f"(HNSW with codes='sq8' or 'auto', SQ8, PQ<m>, IVF<n>,SQ8 or IVF<n>,PQ<m>), "
            f"not {type(template).__name__}"
            + (f" with codes={template.codes!r} (a float walk at {template.dim}-d)" if isinstance(template, HNSWIndex) else ""))
    return True


def arrays_on_disk(doc: dict[str, Any]) -> tuple[str, ...]:
    """The index arrays a collection (its manifest ``doc``) keeps memory-mapped."""
    return ON_DISK_ARRAYS if doc.get("vectors_on_disk") else ()
