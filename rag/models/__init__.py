"""Model implementations for the query layer, written against the array module
of the backend switch (numpy on CPU, CuPy on GPU).

- :mod:`.bert`: BERT-family sentence encoder (all-MiniLM-L6-v2 by default).
- :mod:`.gguf_model`: reads a GGUF Llama-family file (weights, tokenizer, chat template).
- :mod:`.llama`: the Llama forward pass over a paged KV cache (:mod:`.kv_cache`),
  its arithmetic chosen in :mod:`.numerics` (float32, or llama.cpp's bit for bit).
- :mod:`.ops`: norms, activations and softmax shared by both.
"""
