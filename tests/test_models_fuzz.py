"""Fuzzing the checkpoint loader: valid files (torch zip, torch legacy pickle, safetensors with and
without guidedinv's metadata) mutated by truncation, bit flips, spliced bytes, lying declared sizes
in the pickle, and lying safetensors headers (shapes, dtypes, offsets, recorded configurations).
Every case must end in a loaded network with finite floating weights or in one ModelError line
(exit 3) naming the file; any other exception is a failure.

Hypothesis with a fixed seed and a small example count, so CI time stays small; run longer with
``GUIDEDINV_FUZZ_EXAMPLES=2000 python -m pytest tests/test_models_fuzz.py``.
"""

from __future__ import annotations

import io
import json
import os
import pickletools
import struct
import warnings
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from safetensors.torch import save_file

from guidedinv.errors import ModelError
from guidedinv.models import ADMConfig, build_network, load_model
from guidedinv.training.export import export_safetensors

EXAMPLES = int(os.environ.get("GUIDEDINV_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
UNET = ADMConfig(32, 1, (1, 2), (2,), head_channels=None, num_heads=2)
FLAGS = {"num_heads": 2, "use_new_attention_order": False, "noise_schedule": "linear"}
SAFETENSORS_DTYPES = ["F32", "F16", "BF16", "F64", "I8", "U8", "I16", "I32", "I64", "BOOL", "F8_E4M3", "F8_E5M2", "X9", ""]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """name -> bytes of one valid file of each kind, and the byte ranges worth aiming at."""
    folder = tmp_path_factory.mktemp("originals")
    torch.manual_seed(0)
    net = build_network(UNET)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    torch.save(state, folder / "zip.pt")
    torch.save(state, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    save_file(state, folder / "plain.safetensors")
    export_safetensors(net, UNET, folder / "own.safetensors", schedule="linear", prediction="eps", kind="prior")
    return {name: (folder / name).read_bytes() for name in ("zip.pt", "legacy.pt", "plain.safetensors", "own.safetensors")}


def outcome(tmp_path, name: str, data: bytes) -> str:
    """Load ``data`` as a file called ``name``: "ok" or "refused"; anything else fails the test."""
    path = tmp_path / f"case{os.path.splitext(name)[1]}"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = load_model(path, device="cpu", progress=False, flags=None if "own" in name else FLAGS).net
    except ModelError as exc:
        text = str(exc)
        assert "\n" not in text and str(path) in text, repr(text)
        assert exc.exit_code == 3
        return "refused"
    for key, value in net.state_dict().items():  # what loads is a network of finite floating weights
        assert value.is_floating_point() and bool(torch.isfinite(value).all()), key
    return "ok"


def _pickle_ops(data: bytes, name: str) -> tuple[list[int], range]:
    """(offsets in ``data`` of the 1-byte integer arguments (sizes, strides, offsets, numel) of the
    pickle that describes the tensors, the byte range of that pickle)."""
    if name == "zip.pt":
        archive = zipfile.ZipFile(io.BytesIO(data))
        pkl = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
        start, stream, count = data.index(pkl), io.BytesIO(pkl), 1
    else:
        start, stream, count = 0, io.BytesIO(data), 5  # magic, protocol, system info, state dict, storage keys
    found = []
    for _ in range(count):
        for op, _, pos in pickletools.genops(stream):
            if op.name == "BININT1":
                found.append(start + pos + 1)
    return found, range(start, start + stream.tell())


def _header_range(data: bytes, name: str) -> range:
    """The bytes that describe the tensors: the pickle of a torch file, the header of a safetensors file."""
    if name.endswith(".pt"):
        return _pickle_ops(data, name)[1]
    return range(0, 8 + struct.unpack("<Q", data[:8])[0])


@FUZZ
@given(data=st.data())
def test_byte_level_mutations(tmp_path, originals, data):
    name = data.draw(st.sampled_from(sorted(originals)), label="file")
    blob = bytearray(originals[name])
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice", "flip header"]), label="mutation")
    if kind == "truncate":
        blob = blob[: data.draw(st.integers(0, len(blob) - 1), label="cut")]
    elif kind in ("flip", "flip header"):  # anywhere, or in the bytes that describe the tensors
        where = range(len(blob)) if kind == "flip" else _header_range(originals[name], name)
        flips = st.lists(st.tuples(st.sampled_from(where), st.integers(0, 7)), min_size=1, max_size=16 if kind == "flip" else 2)
        for pos, bit in data.draw(flips, label="flips"):
            blob[pos] ^= 1 << bit
    else:
        pos = data.draw(st.integers(0, len(blob) - 1), label="at")
        chunk = data.draw(st.binary(min_size=1, max_size=64), label="bytes")
        blob[pos : pos + len(chunk)] = chunk
    outcome(tmp_path, name, bytes(blob))


@FUZZ
@given(data=st.data())
def test_damaged_pickles(tmp_path, originals, data):
    """A bit or two flipped in the pickle that describes the tensors (what makes the weights-only
    unpickler raise KeyError, IndexError, AssertionError, TypeError ...), or its sizes, strides,
    offsets and storage lengths changed."""
    name = data.draw(st.sampled_from(["zip.pt", "legacy.pt"]), label="file")
    blob = bytearray(originals[name])
    positions, where = _pickle_ops(bytes(blob), name)
    if data.draw(st.booleans(), label="declared sizes"):
        for pos in data.draw(st.lists(st.sampled_from(positions), min_size=1, max_size=4, unique=True), label="ints"):
            blob[pos] = data.draw(st.sampled_from([0, 1, 2, 127, 128, 255]) | st.integers(0, 255), label="value")
    else:
        for pos, bit in data.draw(st.lists(st.tuples(st.sampled_from(where), st.integers(0, 7)), min_size=1, max_size=2)):
            blob[pos] ^= 1 << bit
    outcome(tmp_path, name, bytes(blob))


@FUZZ
@given(data=st.data())
def test_safetensors_headers_that_lie(tmp_path, originals, data):
    name = data.draw(st.sampled_from(["plain.safetensors", "own.safetensors"]), label="file")
    raw = originals[name]
    n = struct.unpack("<Q", raw[:8])[0]
    header, body = json.loads(raw[8 : 8 + n]), raw[8 + n :]
    keys = sorted(k for k in header if k != "__metadata__")
    huge = st.sampled_from([0, 1, 2**31, 2**40, 2**63 - 1]) | st.integers(0, 4096)
    for _ in range(data.draw(st.integers(1, 3), label="lies")):
        key = data.draw(st.sampled_from(keys), label="tensor")
        field = data.draw(st.sampled_from(["shape", "dtype", "data_offsets", "config"]), label="field")
        if field == "shape":
            header[key]["shape"] = data.draw(st.lists(huge, max_size=4), label="shape")
        elif field == "dtype":
            header[key]["dtype"] = data.draw(st.sampled_from(SAFETENSORS_DTYPES), label="dtype")
        elif field == "data_offsets":
            header[key]["data_offsets"] = data.draw(st.lists(huge, min_size=2, max_size=2), label="offsets")
        elif "__metadata__" in header and "config" in header["__metadata__"]:
            config = json.loads(header["__metadata__"]["config"])
            entry = data.draw(st.sampled_from(sorted(config)), label="config key")
            config[entry] = data.draw(st.none() | st.booleans() | huge | st.floats(allow_nan=True) | st.text(max_size=4)
                                      | st.lists(huge, max_size=3), label="config value")
            header["__metadata__"]["config"] = json.dumps(config)
    text = json.dumps(header).encode()
    declared = data.draw(st.sampled_from([len(text), len(text) + 8, len(text) - 1, 2**40]), label="header length")
    outcome(tmp_path, name, struct.pack("<Q", declared) + text + body)


def test_the_originals_load(tmp_path, originals):
    """The mutations start from files that load: the refusals above are the mutations' doing."""
    assert {name: outcome(tmp_path, name, blob) for name, blob in originals.items()} == dict.fromkeys(originals, "ok")
