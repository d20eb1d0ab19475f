"""Scalar quantizers: 8 bits per dimension (``sq8``) or half precision (``fp16``).

``sq8`` maps each dimension linearly from ``[vmin, vmax]`` to 0..255, learnt per dimension
in ``train``. With ``trim`` > 0 the range is the ``[trim, 1 - trim]`` quantile range instead
of min/max, so a few outliers do not waste the 256 levels of everyone else (outliers clip).
Reconstruction error per coordinate inside the range is at most ``scale / 2``.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.errors import InvalidArgumentError, NotTrainedError
from ..engine.validation import as_matrix

KINDS = ("sq8", "fp16")


class ScalarQuantizer:
    """Per-dimension scalar codec; ``code_size`` bytes per vector."""

    def __init__(self, dim: int, kind: str = "sq8", *, trim: float = 0.0) -> None:
        kind = str(kind).lower()
        if kind not in KINDS:
            raise InvalidArgumentError(f"unknown scalar quantizer {kind!r}; choose one of {', '.join(KINDS)}")
        if not 0.0 <= trim < 0.5:
            raise InvalidArgumentError(f"trim must be in [0, 0.5), got {trim!r}")
        self.dim = int(dim)
        self.kind = kind
        self.trim = float(trim)
        self.vmin: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    @property
    def is_trained(self) -> bool:
        return self.kind == "fp16" or self.vmin is not None

    @property
    def code_size(self) -> int:
        return self.dim * (1 if self.kind == "sq8" else 2)

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.kind == "sq8" else np.float16)

    def train(self, x: Any) -> None:
        """Learn the per-dimension range (sq8); fp16 needs no training."""
        x = as_matrix(x, self.dim)
        if self.kind == "fp16":
            return
        if self.trim > 0:
            lo, hi = np.quantile(x, [self.trim, 1.0 - self.trim], axis=0)
        else:
            lo, hi = x.min(axis=0), x.max(axis=0)
        span = (hi - lo).astype(np.float32)
        self.vmin = lo.astype(np.float32)
        self.scale = np.where(span > 0, span / 255.0, 1.0).astype(np.float32)

    def encode(self, x: np.ndarray) -> np.ndarray:
        if not self.is_trained:
            raise NotTrainedError("ScalarQuantizer.encode() before train()")
        if self.kind == "fp16":
            return np.clip(x, -65504.0, 65504.0).astype(np.float16)
        return np.clip(np.rint((x - self.vmin) / self.scale), 0, 255).astype(np.uint8)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        if not self.is_trained:
            raise NotTrainedError("ScalarQuantizer.decode() before train()")
        if self.kind == "fp16":
            return np.asarray(codes).astype(np.float32)
        return (np.asarray(codes).astype(np.float32) * self.scale + self.vmin).astype(np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays = {} if self.vmin is None else {"sq_vmin": self.vmin, "sq_scale": self.scale}
        return arrays, {"sq_kind": self.kind, "sq_trim": self.trim}

    @classmethod
    def from_state(cls, dim: int, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> "ScalarQuantizer":
        sq = cls(dim, meta["sq_kind"], trim=meta["sq_trim"])
        if "sq_vmin" in arrays:
            sq.vmin = np.array(arrays["sq_vmin"])
            sq.scale = np.array(arrays["sq_scale"])
        return sq
