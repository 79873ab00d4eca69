"""Quantization: from a float Darknet network to the integers and formats of the fixed-point engine.

* :mod:`~mdfi.quant.quantize` -- the quantizer and the quantized model;
* :mod:`~mdfi.quant.calibrate` -- activation statistics and the choice of per-layer formats
  (:mod:`~mdfi.quant.calib_stats`: one tensor's statistics; :mod:`~mdfi.quant.calib_estimate`:
  the data-free estimate from batch norm);
* :mod:`~mdfi.quant.recipes` -- the shipped recipes and the cache of quantized zoo models;
* :mod:`~mdfi.quant.modelfile` -- the ``.mdfi`` quantized-model file;
* :mod:`~mdfi.quant.formats`, :mod:`~mdfi.quant.mixed`, :mod:`~mdfi.quant.equalize` -- formats
  chosen by their effect on the heads, mixed weight widths, activation range equalization.

Post-training quantization methods that use calibration images (data-driven).

* :mod:`mdfi.quant.sequential` -- quantize layer by layer while running the partly
  quantized network on calibration inputs: every convolution sees the integer inputs it
  will see at inference; empirical bias correction.
* :mod:`mdfi.quant.gptq` -- weight rounding with error feedback (GPTQ / OBQ) at the
  power-of-two formats MDFI uses.
* :mod:`mdfi.quant.adaround` -- up/down rounding of each weight learned per layer on
  calibration data (AdaRound), at the same formats.
* :mod:`mdfi.quant.brecq` -- the same up/down rounding learned jointly over blocks of
  consecutive convolutions with their activations quantized and randomly dropped (BRECQ +
  QDrop).
* :mod:`mdfi.quant.align` and :mod:`mdfi.quant.actequal` -- real-valued cross-layer
  rescaling of the float network before quantization: mantissa alignment of the weight
  steps, and activation-range equalization for narrow per-tensor activation formats.

The integer semantics (docs/fixed-point.md) are untouched: these modules only choose the
integers and formats :func:`mdfi.quant.quantize.quantize_network` stores.
"""
