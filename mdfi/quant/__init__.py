"""Post-training quantization methods that use calibration images (data-driven).

* :mod:`mdfi.quant.sequential` -- quantize layer by layer while running the partly
  quantized network on calibration inputs: every convolution sees the integer inputs it
  will see at inference; empirical bias correction.
* :mod:`mdfi.quant.gptq` -- weight rounding with error feedback (GPTQ / OBQ) at the
  power-of-two formats MDFI uses.

The integer semantics (docs/fixed-point.md) are untouched: these modules only choose the
integers and formats :func:`mdfi.quantize.quantize_network` stores.
"""
