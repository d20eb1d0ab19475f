"""Kernels of the query layer's models, one module per backend
(``<family>_numpy`` / ``_numba`` / ``_cupy``), picked by
``shoal.engine.backend.load_kernels``.

- ``qlinear``: linear layers over GGUF weights. Numba (the CPU default)
  multiplies the Q4_1/Q8_0 blocks themselves (Q5_0 and Q4_K converted to them
  losslessly), 6x fewer bytes per token than float32 (an earlier row-at-a-time
  Numba kernel was slower than BLAS; groups of 8 rows with float nibble
  unpacking made it 2.3x faster per CPU-second); numpy dequantises once to
  float32 for BLAS, CuPy for cuBLAS.
- ``decode``: a Llama decode step's every layer in one Numba call (the per-layer
  Python and numpy glue cost as much as the matvecs); numpy/CuPy have none.
- ``attention``: over the paged KV cache; Numba has a decode kernel and a
  tiled online-softmax prefill for long prompts, numpy/CuPy plain array code;
  both take a sliding window (Gemma's local layers).
- ``dequant_numpy``: GGUF block types to float32, K-quants included (Q4_K, Q5_K,
  Q6_K), checked against gguf-py's dequantiser.
- ``ggml_numpy``: llama.cpp's CPU arithmetic reproduced bit for bit (Q8
  activations, SIMD reduction orders, its exp), behind numerics="llama.cpp".
"""
