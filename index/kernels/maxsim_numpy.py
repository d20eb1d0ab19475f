"""Reference MaxSim (ColBERT late interaction) for ``maxsim_numba``: same signature and results.

Pair ``c`` scores the query set ``pair_set[c]`` (rows ``q_off[s]:q_off[s + 1]`` of ``q``) against
one record's vectors, rows ``starts[c]:ends[c]`` of ``vectors``:
``score = sum over query rows i of max over record rows j of sim(q_i, v_j)``, where ``sim`` is the
dot product (``l2=False``: cosine on normalised vectors, inner product) or minus the squared L2
distance (``l2=True``). A plain matrix product per pair; the tests check the kernels against it.
"""
from __future__ import annotations

import numpy as np


def maxsim(q, q_off, pair_set, vectors, starts, ends, l2):
    out = np.empty(pair_set.shape[0], np.float32)
    for c in range(pair_set.shape[0]):
        s = pair_set[c]
        qs = q[q_off[s]:q_off[s + 1]].astype(np.float64)
        docs = np.asarray(vectors[starts[c]:ends[c]], np.float64)
        sims = qs @ docs.T
        if l2:
            sims = 2.0 * sims - (qs * qs).sum(1)[:, None] - (docs * docs).sum(1)[None, :]
        out[c] = sims.max(axis=1).sum()
    return out
