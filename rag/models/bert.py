"""BERT-family sentence encoder: the transformer forward pass, mean/CLS/max
pooling and L2 normalisation, on the backend's array module.

Reads a sentence-transformers style directory: ``config.json`` (BERT hyper-
parameters), ``model.safetensors`` (float32 weights, with or without the
``bert.`` prefix), ``tokenizer.json`` (or ``vocab.txt``) and optionally
``1_Pooling/config.json`` / ``sentence_bert_config.json``. Any BERT-family
checkpoint in that layout works (MiniLM, BGE-small, E5-small ...).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ...engine.errors import InvalidArgumentError
from .ops import gelu, layer_norm, softmax

_POOLING_MODES = ("mean", "cls", "max")


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_position: int
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pooling: str = "mean"
    normalize: bool = True

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def read_config(model_dir: Path) -> BertConfig:
    """Hyper-parameters from ``config.json`` plus the pooling mode of the sentence-transformers files."""
    cfg = _read_json(model_dir / "config.json")
    if not cfg:
        raise InvalidArgumentError(f"{model_dir} has no config.json; expected a BERT-family model directory")
    if cfg.get("hidden_act", "gelu") != "gelu":
        raise InvalidArgumentError(f"hidden_act {cfg['hidden_act']!r} is not supported; only 'gelu' (BERT)")
    pool = _read_json(model_dir / "1_Pooling" / "config.json")
    pooling = "mean"
    if pool.get("pooling_mode_cls_token"):
        pooling = "cls"
    elif pool.get("pooling_mode_max_tokens"):
        pooling = "max"
    modules = _read_json(model_dir / "modules.json") if (model_dir / "modules.json").is_file() else []
    normalize = not modules or any(m.get("type", "").endswith("Normalize") for m in modules)
    return BertConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=int(cfg["hidden_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=int(cfg["num_attention_heads"]),
        intermediate_size=int(cfg["intermediate_size"]),
        max_position=int(cfg.get("max_position_embeddings", 512)),
        type_vocab_size=int(cfg.get("type_vocab_size", 2)),
        layer_norm_eps=float(cfg.get("layer_norm_eps", 1e-12)),
        pooling=pooling,
        normalize=normalize,
    )


class BertEncoder:
    """Weights on the device plus the forward pass. Linear weights are stored
    transposed ((in, out), contiguous) so every projection is one plain matmul;
    Q, K and V are fused into one (hidden, 3*hidden) matrix."""

    def __init__(self, config: BertConfig, weights: dict[str, np.ndarray], xp: ModuleType) -> None:
        self.config = config
        self.xp = xp
        w = {k.removeprefix("bert."): v for k, v in weights.items()}

        def get(name: str) -> np.ndarray:
            if name not in w:
                raise InvalidArgumentError(f"BERT weights lack tensor {name!r}")
            return np.ascontiguousarray(w[name], dtype=np.float32)

        def dev(a: np.ndarray) -> Any:
            return xp.asarray(np.ascontiguousarray(a, dtype=np.float32))

        self.word = dev(get("embeddings.word_embeddings.weight"))
        self.pos = dev(get("embeddings.position_embeddings.weight"))
        self.type0 = dev(get("embeddings.token_type_embeddings.weight")[0])
        self.emb_ln = (dev(get("embeddings.LayerNorm.weight")), dev(get("embeddings.LayerNorm.bias")))
        self.layers: list[dict[str, Any]] = []
        for i in range(config.num_layers):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([get(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")])
            qkv_b = np.concatenate([get(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")])
            self.layers.append(
                {
                    "qkv_w": dev(qkv_w.T),
                    "qkv_b": dev(qkv_b),
                    "o_w": dev(get(p + "attention.output.dense.weight").T),
                    "o_b": dev(get(p + "attention.output.dense.bias")),
                    "ln1": (dev(get(p + "attention.output.LayerNorm.weight")), dev(get(p + "attention.output.LayerNorm.bias"))),
                    "i_w": dev(get(p + "intermediate.dense.weight").T),
                    "i_b": dev(get(p + "intermediate.dense.bias")),
                    "f_w": dev(get(p + "output.dense.weight").T),
                    "f_b": dev(get(p + "output.dense.bias")),
                    "ln2": (dev(get(p + "output.LayerNorm.weight")), dev(get(p + "output.LayerNorm.bias"))),
                }
            )

    def hidden_states(self, ids: Any, mask: Any) -> Any:
        """Last hidden states (B, L, H) for token ids (B, L) and attention mask (B, L) in {0, 1}."""
        xp, cfg = self.xp, self.config
        b, n = ids.shape
        if n > cfg.max_position:
            raise InvalidArgumentError(f"sequence length {n} exceeds the model's {cfg.max_position} positions")
        eps, nh, hd = cfg.layer_norm_eps, cfg.num_heads, cfg.head_dim
        x = self.word[ids] + self.pos[:n][None] + self.type0
        x = layer_norm(xp, x, *self.emb_ln, eps)
        # Additive mask: padded keys get a large negative score (exp underflows to exactly 0).
        bias = ((mask[:, None, None, :].astype(xp.float32) - 1.0) * 1e9).astype(xp.float32)
        scale = 1.0 / math.sqrt(hd)
        for layer in self.layers:
            qkv = x @ layer["qkv_w"] + layer["qkv_b"]  # (B, L, 3H)
            qkv = qkv.reshape(b, n, 3, nh, hd).transpose(2, 0, 3, 1, 4)  # (3, B, nh, L, hd)
            q, k, v = qkv[0], qkv[1], qkv[2]
            att = softmax(xp, (q @ k.transpose(0, 1, 3, 2)) * scale + bias)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(b, n, nh * hd)
            x = layer_norm(xp, x + ctx @ layer["o_w"] + layer["o_b"], *layer["ln1"], eps)
            h = gelu(xp, x @ layer["i_w"] + layer["i_b"])
            x = layer_norm(xp, x + h @ layer["f_w"] + layer["f_b"], *layer["ln2"], eps)
        return x

    def pool(self, hidden: Any, mask: Any) -> Any:
        """Sentence vectors (B, H): pooled as configured, then L2-normalised if the model says so."""
        xp = self.xp
        m = mask.astype(xp.float32)[:, :, None]
        if self.config.pooling == "cls":
            out = hidden[:, 0]
        elif self.config.pooling == "max":
            out = xp.where(m > 0, hidden, -xp.inf).max(axis=1)
        else:
            out = (hidden * m).sum(axis=1) / xp.maximum(m.sum(axis=1), 1e-9)
        if self.config.normalize:
            out = out / xp.maximum(xp.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out.astype(xp.float32)

    def encode_ids(self, ids: Any, mask: Any) -> Any:
        return self.pool(self.hidden_states(ids, mask), mask)
