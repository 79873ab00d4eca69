"""Fuzzing the ``.mdfi`` model-file reader (issue 6; the rules and shared helpers: fuzz_common.py)."""

from __future__ import annotations

import zlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mdfi.quant import modelfile
from mdfi.errors import ModelFileError

import fuzz_common
from fuzz_common import (fuzz, fresh, assert_user_error, split_model, join_model, check_model_bytes,
                         TARGETED, NASTY_JSON, json_paths, mutate_json, JSON_OPS, _tensor)

# fixtures shared with the other test_fuzz_* modules (defined in fuzz_common.py)
work = fuzz_common.work
model_files = fuzz_common.model_files


# ================================================================================================
# 3. .mdfi model files
def test_model_files_load_and_run(work, model_files):
    for blob in model_files.values():
        assert not isinstance(check_model_bytes(work, blob), BaseException)


@fuzz(100)
@given(st.sampled_from(["mini", "region"]), st.integers(0, 1 << 30))
@example("mini", 0)
@example("mini", 19)
@example("mini", 200)
def test_model_truncated(work, model_files, which, cut):
    blob = model_files[which]
    check_model_bytes(work, blob[:cut % len(blob)])


@fuzz(200)
@given(st.sampled_from(["mini", "region"]),
       st.lists(st.tuples(st.integers(0, 1 << 30), st.integers(0, 255)), min_size=1, max_size=6),
       st.booleans())
def test_model_byte_flips(work, model_files, which, flips, in_prefix):
    blob = bytearray(model_files[which])
    for pos, byte in flips:
        blob[(pos % 20) if in_prefix else pos % len(blob)] = byte
    check_model_bytes(work, bytes(blob))


@pytest.mark.parametrize("what", sorted(TARGETED))
def test_model_targeted_header_mutations(work, model_files, what):
    header, data = split_model(model_files["mini"])
    TARGETED[what](header)
    res = check_model_bytes(work, join_model(header, data))
    assert isinstance(res, BaseException), f"{what}: accepted"


@pytest.mark.parametrize("key, value", [
    ("layer_abits", True), ("layer_wbits", [8]), ("layer_abits", {"x": 8}), ("layer_abits", {"3": "8"}),
    ("layer_wbits", {"3": 99}), ("wbits", "8"), ("abits", True), ("rounding", "\x1b[2J"),
    ("formats_source", 7), ("act_options", {"clip budget": 1}), ("act_options", {"clip_budget": "x"}),
    ("act_options", [1]),
])
def test_model_options_of_wrong_type_are_refused_at_load(work, model_files, key, value):
    """The header's options are only a record, but reports read them (mdfi info, describe):
    a value of the wrong type is a one-line load error, not a crash later (found by the
    mutation fuzzer above: layer_abits = true loaded and broke describe())."""
    header, blob = split_model(model_files["mini"])
    header["options"][key] = value
    res = check_model_bytes(work, join_model(header, blob))
    assert isinstance(res, ModelFileError) and "options" in str(res), res


@fuzz(400)
@given(st.sampled_from(["mini", "region"]), st.data())
def test_model_header_json_mutations(work, model_files, which, data):
    header, blob = split_model(model_files[which])
    for _ in range(data.draw(st.integers(1, 3))):
        paths = json_paths(header)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        mutate_json(header, path, data.draw(JSON_OPS), data.draw(NASTY_JSON))
    check_model_bytes(work, join_model(header, blob, fix_crc=data.draw(st.integers(0, 9)) > 0))


@fuzz(150)
@given(st.sampled_from(["mini", "region"]), st.data())
def test_model_tensor_data_with_valid_checksums(work, model_files, which, data):
    """Random tensor contents with their CRCs fixed: the value checks (weights beyond their
    width, biases beyond the accumulator bound, lookup tables out of range) must refuse them."""
    header, blob = split_model(model_files[which])
    blob = bytearray(blob)
    t = data.draw(st.sampled_from(header["tensors"]))
    off, n = t["offset"], t["nbytes"]
    for _ in range(data.draw(st.integers(1, 8))):
        if n:
            blob[off + data.draw(st.integers(0, n - 1))] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()) and n:
        fill = data.draw(st.sampled_from([0x00, 0x7f, 0x80, 0xff]))
        blob[off:off + n] = bytes([fill]) * n
    t["crc32"] = zlib.crc32(bytes(blob[off:off + n]))
    check_model_bytes(work, join_model(header, bytes(blob)))


@pytest.mark.parametrize("which, tensor, fill, words", [
    ("region", "layer006.expneg_lut", 0x80, "softmax table"),     # negative: softmax sums <= 0
    ("region", "layer006.logistic_lut", 0xff, "logistic table"),
    ("mini", "layer020.exp_lut", 0xff, "exp table"),
])
def test_model_lookup_tables_out_of_range(work, model_files, which, tensor, fill, words):
    """Tables with valid checksums but values the quantizer never writes: the C kernels and
    the NumPy reference would disagree on them (C guards a zero softmax sum, NumPy divides
    by it), so the loader refuses them."""
    header, blob = split_model(model_files[which])
    blob = bytearray(blob)
    t = _tensor(header, tensor)
    blob[t["offset"]:t["offset"] + t["nbytes"]] = bytes([fill]) * t["nbytes"]
    t["crc32"] = zlib.crc32(bytes(blob[t["offset"]:t["offset"] + t["nbytes"]]))
    exc = check_model_bytes(work, join_model(header, bytes(blob)))
    assert isinstance(exc, ModelFileError) and words in str(exc), repr(exc)


def test_model_file_is_a_directory_or_missing(work):
    d = fresh(work, "m") / "dir.mdfi"
    d.mkdir()
    for p in (d, d.parent / "missing.mdfi"):
        with pytest.raises(ModelFileError) as ei:
            modelfile.load(p)
        assert_user_error(ei.value, p)
