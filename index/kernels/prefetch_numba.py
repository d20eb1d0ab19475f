"""A cache prefetch hint for Numba kernels (LLVM's ``llvm.prefetch``), shared by the families
whose kernels read rows in an order the hardware prefetcher cannot guess: the HNSW walk (a
node's neighbours) and the exact scan of a filter's scattered rows."""
from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

#: A cache line: a kernel that prefetches a whole row hints once per this many bytes of it.
LINE_BYTES = 64


@intrinsic
def prefetch(typingctx, arr, i, j):
    """Hint the cache to load ``arr[i, j]`` (``arr[i]`` for 1-D; j ignored): read, high locality,
    as ``_mm_prefetch`` in hnswlib and FAISS."""

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [args[1], args[2]][: aryty.ndim]
        idx = [context.cast(builder, v, t, types.intp) for v, t in zip(idx, sig.args[1:])]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i8p = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p.type, i32, i32, i32]),
                                            "llvm.prefetch.p0i8")
        builder.call(fn, [i8p, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, i, j), codegen
