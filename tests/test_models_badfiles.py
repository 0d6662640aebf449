"""Checkpoints a careless user or an attacker hands over, made here by the tests: each ends in one
ModelError line naming the file (exit 3 on the command line), never a traceback and never a network
that computes garbage. The random mutations are in tests/test_models_fuzz.py."""

from __future__ import annotations

import builtins
import io
import json
import os
import pickle
import re
import struct

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from guidedinv.cli import app
from guidedinv.errors import ModelError
from guidedinv.models import ADMConfig, build_network, load_model

UNET = ADMConfig(32, 1, (1, 2), (2,), head_channels=None, num_heads=2)


@pytest.fixture(autouse=True)
def _one_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDEDINV_HOME", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def state():
    torch.manual_seed(0)
    net = build_network(UNET)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.1)
    return {k: v.contiguous() for k, v in net.state_dict().items()}


def refused(path, match: str, **kwargs) -> str:
    """load_model(path) raises one ModelError line that names the file and matches ``match``."""
    with pytest.raises(ModelError) as info:
        load_model(path, device="cpu", progress=False, **kwargs)
    text = str(info.value)
    assert "\n" not in text and str(path) in text, text
    assert info.value.exit_code == 3
    assert re.search(match, text), text
    return text


# ------------------------------------------------------------------------- weights no network has


@pytest.mark.parametrize("fmt", ["pt", "safetensors"])
def test_non_finite_weights_are_refused_naming_the_tensor_and_the_count(tmp_path, state, fmt):
    bad = dict(state)
    key = "input_blocks.1.0.in_layers.2.weight"  # not the first tensor: the others load before it
    w = bad[key].clone()
    w.view(-1)[[3, 5, 7]] = torch.tensor([float("nan"), float("inf"), float("-inf")])
    bad[key] = w
    path = tmp_path / f"nan.{fmt}"
    torch.save(bad, path) if fmt == "pt" else save_file(bad, path)
    refused(path, rf"weight {key} \(float32, {w.numel()} values\) has 1 NaN and 2 infinite values")
    half = {k: v.half() for k, v in bad.items()}
    torch.save(half, tmp_path / "nan16.pt")
    refused(tmp_path / "nan16.pt", rf"weight {key} \(float16, .*1 NaN and 2 infinite")


@pytest.mark.parametrize("dtype", [torch.int8, torch.uint8, torch.int32, torch.int64, torch.bool, torch.complex64])
def test_non_floating_weights_are_refused(tmp_path, state, dtype):
    path = tmp_path / "int.pt"
    torch.save({k: v.to(dtype) for k, v in state.items()}, path)
    first = next(iter(build_network(UNET, "meta").state_dict()))
    refused(path, rf"weight {first} is {str(dtype).removeprefix('torch.')}, not floating point")
    if dtype != torch.complex64:  # safetensors has no complex dtype
        save_file({k: v.to(dtype) for k, v in state.items()}, tmp_path / "int.safetensors")
        refused(tmp_path / "int.safetensors", "not floating point")
    one = dict(state)
    one["out.2.bias"] = one["out.2.bias"].to(dtype)  # the last tensor only
    torch.save(one, path)
    refused(path, r"weight out\.2\.bias is")


def test_a_finite_weight_that_overflows_the_chosen_dtype_says_so(tmp_path, state):
    big = dict(state)
    key = "input_blocks.1.0.in_layers.2.weight"  # a torso convolution: fp16 under dtype="fp16"
    big[key] = big[key].clone()
    big[key].view(-1)[0] = 1e6
    torch.save(big, tmp_path / "big.pt")
    refused(tmp_path / "big.pt", rf"weight {key} holds values up to 1e\+06, beyond the range of float16", dtype="fp16")
    load_model(tmp_path / "big.pt", device="cpu")  # fp32 holds it


def test_good_weights_still_load_exactly_in_every_floating_dtype(tmp_path, state):
    x, t = torch.randn(1, 3, 8, 8), torch.tensor([50.0])
    ref = build_network(UNET)
    ref.load_state_dict(state)
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        torch.save({k: v.to(dtype) for k, v in state.items()}, tmp_path / "w.pt")
        net = load_model(tmp_path / "w.pt", device="cpu", flags="num_heads=2 noise_schedule=linear").net
        expected = build_network(UNET)
        expected.load_state_dict({k: v.to(dtype).float() for k, v in state.items()})
        with torch.no_grad():
            torch.testing.assert_close(net(x, t), expected(x, t), rtol=0, atol=0)


# ------------------------------------------------------------------------------- files and folders


def test_unreadable_files_and_folders(tmp_path, state, monkeypatch):
    good = tmp_path / "good.pt"
    torch.save(state, good)
    (tmp_path / "empty.pt").write_bytes(b"")
    refused(tmp_path / "empty.pt", "is empty")
    (tmp_path / "none").mkdir()
    refused(tmp_path / "none", "is a directory with 0 weight files")
    (tmp_path / "two").mkdir()
    for name in ("a.pt", "b.safetensors"):
        (tmp_path / "two" / name).write_bytes(good.read_bytes())
    refused(tmp_path / "two", "is a directory with 2 weight files")
    os.mkfifo(tmp_path / "pipe.pt")
    refused(tmp_path / "pipe.pt", "is not a regular file")  # and does not block reading it
    with pytest.raises(ModelError, match="cannot read .*File name too long"):
        load_model("x" * 5000 + ".pt", device="cpu")

    real_open = builtins.open

    def denied(path, *args, **kwargs):
        if str(path) == str(good):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)  # what a file without read permission does (also for root)
    refused(good, "cannot read .*Permission denied")
    monkeypatch.undo()
    if os.geteuid() != 0:  # root reads any file: the real permission bits only bite other users
        good.chmod(0)
        try:
            refused(good, "cannot read .*Permission denied")
        finally:
            good.chmod(0o600)


@pytest.mark.parametrize("seed", range(6))
def test_a_pickle_marker_followed_by_garbage(tmp_path, seed):
    gen = torch.Generator().manual_seed(seed)
    body = bytes(torch.randint(0, 256, (int(torch.randint(1, 400, (1,), generator=gen)),), generator=gen).tolist())
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"\x80" + body)
    refused(path, "cannot read|refusing to load")
    path.write_bytes(b"\x80")
    refused(path, "cannot read .*corrupt or truncated")


def _legacy(state, path):
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path.read_bytes()


def test_truncated_torch_files_at_every_kind_of_cut(tmp_path, state):
    for name, data in (("legacy.pt", _legacy(state, tmp_path / "l.pt")),
                       ("zip.pt", (torch.save(state, tmp_path / "z.pt"), (tmp_path / "z.pt").read_bytes())[1])):
        cuts = sorted({1, 2, 8, 29, 155, 400, 1000, len(data) // 3, len(data) // 2, len(data) - 100, len(data) - 1})
        for cut in cuts:
            (tmp_path / name).write_bytes(data[:cut])
            refused(tmp_path / name, "cannot read .*corrupt or truncated" if cut > 3 or "legacy" in name
                    else "not a checkpoint guidedinv can read")  # "PK" alone is no zip yet


def test_errors_raised_inside_the_weights_only_unpickler_are_one_line(tmp_path, state):
    """torch 2.13's weights-only unpickler raises KeyError, IndexError, AssertionError, TypeError,
    UnicodeDecodeError, EOFError ... on damaged bytes; hand-made pickles reach each of them."""
    data = _legacy(state, tmp_path / "l.pt")
    p = pickle
    cases = {
        "KeyError (memo)": p.PROTO + b"\x02" + p.BINGET + b"\x07" + p.STOP,  # a memo slot never stored
        "IndexError (no mark)": p.PROTO + b"\x02" + p.EMPTY_DICT + p.SETITEMS + p.STOP,
        "EOFError": p.PROTO + b"\x02" + p.EMPTY_DICT,
        "UnicodeDecodeError": p.PROTO + b"\x02" + p.BINUNICODE + b"\x02\x00\x00\x00\xff\xfe" + p.STOP,
        "UnpicklingError (an opcode it does not take)": p.PROTO + b"\x02" + p.POP + p.STOP,
    }
    for what, blob in cases.items():
        (tmp_path / f"{what.split()[0]}.pt").write_bytes(blob)
        refused(tmp_path / f"{what.split()[0]}.pt", "cannot read .*corrupt or truncated")
    # a storage key changed in the legacy file's main pickle: "storage key ... not found" (AssertionError)
    stream = io.BytesIO(data)
    for _ in range(3):  # magic number, protocol version, system info
        pickle.load(stream)
    skim = type("Skim", (pickle.Unpickler,), {"find_class": lambda self, module, name: (lambda *a: None),
                                              "persistent_load": lambda self, pid: None})
    skim(stream).load()  # our own file's state dict, skimmed: no class is built, no storage read
    key = pickle.load(stream)[0].encode()  # the storage keys, in the order of the raw data that follows
    at = data.index(key)
    changed = data[:at] + key[:-1] + (b"1" if key[-1:] != b"1" else b"2") + data[at + len(key):]
    (tmp_path / "key.pt").write_bytes(changed)
    refused(tmp_path / "key.pt", "cannot read .*corrupt or truncated")


def test_containers_that_are_not_state_dicts(tmp_path):
    for name, obj, message in (
        ("list.pt", [torch.zeros(2)], "holds a list, not a state dict"),
        ("intkeys.pt", {1: torch.zeros(2), 2: torch.zeros(3)}, "holds no tensors"),
        ("deep.pt", {"ema": {"ema": {"ema": {"ema": {"ema": {"ema": {}}}}}}}, "holds no tensors"),
    ):
        torch.save(obj, tmp_path / name)
        refused(tmp_path / name, message)


def _safetensors_parts(path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _pack(header, body, length=None):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + body


def test_safetensors_headers_that_lie(tmp_path, state):
    save_file(state, tmp_path / "good.safetensors")
    header, body = _safetensors_parts(tmp_path / "good.safetensors")
    first = next(k for k in header if k != "__metadata__")

    def changed(key, field, value):
        h = json.loads(json.dumps(header))
        h[key][field] = value
        return _pack(h, body)

    shifted = json.loads(json.dumps(header))
    for k in shifted:
        if k != "__metadata__":
            a, b = shifted[k]["data_offsets"]
            shifted[k]["data_offsets"] = [0, b - a]  # every tensor on the same bytes
    cases = {
        "length beyond the file": _pack(header, body, length=len(body) * 4),
        "length 2**63": _pack(header, body, length=2**63),
        "offsets beyond the file": changed(first, "data_offsets", [0, 10**9]),
        "shape larger than its bytes": changed(first, "shape", [10**6]),
        "negative shape": changed(first, "shape", [-1]),
        "dtype of another width": changed(first, "dtype", "F64"),
        "unknown dtype": changed(first, "dtype", "Q7"),
        "overlapping tensors": _pack(shifted, body),
        "body missing": _pack(header, b""),
        "truncated body": _pack(header, body[: len(body) // 2]),
        "header not JSON": struct.pack("<Q", 9) + b"{not json" + body,
        "metadata not strings": _pack({**header, "__metadata__": {"format": 3}}, body),
    }
    for what, blob in cases.items():
        path = tmp_path / f"{what.replace(' ', '_')}.safetensors"
        path.write_bytes(blob)
        refused(path, "cannot read .*corrupt or truncated")
    # a header that lies about the dtype honestly (the bytes are int8): refused as weights
    save_file({k: v.to(torch.int8) for k, v in state.items()}, tmp_path / "i8.safetensors")
    refused(tmp_path / "i8.safetensors", "is int8, not floating point")
    # guidedinv metadata that lies about the network
    meta = {"format": "guidedinv-adm-1", "schedule": "linear", "prediction": "eps"}
    for config, message in (
        ("{bad", "unreadable guidedinv metadata"),
        (json.dumps({**UNET.to_dict(), "model_channels": 64}), "does not match the configuration recorded"),
        (json.dumps({**UNET.to_dict(), "channel_mult": [1e308, 2]}), "configuration recorded in the file is invalid|does not"),
        (json.dumps({**UNET.to_dict(), "banana": 1}), "configuration recorded in the file is invalid"),
    ):
        save_file(state, tmp_path / "meta.safetensors", metadata={**meta, "config": config})
        refused(tmp_path / "meta.safetensors", message)
    save_file(state, tmp_path / "meta.safetensors", metadata={**meta, "config": json.dumps(UNET.to_dict()), "schedule": "banana"})
    refused(tmp_path / "meta.safetensors", "banana")


def test_the_command_line_says_one_line_and_exits_3(tmp_path, state):
    bad = dict(state)
    bad["out.2.weight"] = torch.full_like(bad["out.2.weight"], float("nan"))
    torch.save(bad, tmp_path / "nan.pt")
    (tmp_path / "nan.flags.json").write_text('{"num_heads": 2, "use_new_attention_order": false, "noise_schedule": "linear"}')
    image = tmp_path / "img.png"
    from guidedinv.io import write_image

    write_image(image, torch.rand(3, 16, 16))
    for model in (tmp_path / "nan.pt", tmp_path / "img.png"):
        result = CliRunner().invoke(app, ["denoise", str(image), "--model", str(model), "-o", str(tmp_path / "o.png"),
                                          "--device", "cpu"])
        assert result.exit_code == 3, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("guidedinv: error: ") and str(model) in lines[0], result.stderr
        assert not (tmp_path / "o.png").exists()
