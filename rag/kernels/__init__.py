"""Kernels of the query layer's models, one module per backend
(``<family>_numpy`` / ``_cupy``; Numba falls back to numpy), picked by
``shoal.engine.backend.load_kernels``.

- ``qlinear``: linear layers over GGUF weights, dequantised once to float32
  and multiplied with BLAS / cuBLAS. (A Numba kernel multiplying Q4_1 blocks
  directly used 5x less memory but decoded at 16 tok/s against BLAS's 27 on
  one core, so float32 stays the CPU path.)
- ``ggml_numpy``: llama.cpp's CPU arithmetic reproduced bit for bit (Q8
  activations, SIMD reduction orders, its exp), behind numerics="llama.cpp".
"""
