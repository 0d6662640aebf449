"""benchmarks/device_check.py, the accelerator session's prepared script, end to end on the CPU with its
tiny configuration (the real run needs a GPU: its docstring has the device tool's invocation)."""
from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def device_check():
    spec = importlib.util.spec_from_file_location("device_check", ROOT / "benchmarks" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cuda_tests_are_the_ones_that_ask_for_cuda(device_check):
    ids = device_check.cuda_tests()
    assert "tests/test_operators.py::test_float32_and_devices" in ids
    for node_id in ids:
        path, name = node_id.split("::")
        text = (ROOT / path).read_text()
        fn = next(n for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name == name)
        assert "cuda.is_available" in ast.get_source_segment(text, fn)


def test_tiny_run_writes_the_tables(device_check, tmp_path):
    result = device_check.main(["--tiny", "--no-tests", "--device", "cpu", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "device_check.json").read_text())
    assert saved["network"] == result["network"] and saved["tests"]["status"] == "skipped (--no-tests)"
    assert [(r["dtype"], r["batch"]) for r in saved["network"]] == [(d, b) for d in ("fp32", "fp16", "bf16") for b in (1, 2)]
    assert all(r["ms_per_call"] > 0 for r in saved["network"] if r["dtype"] == "fp32")
    assert [(r["dtype"], r["sampler"]) for r in saved["loop"]] == [
        (d, s) for d in ("fp32", "bf16") for s in ("ddim, no term", "pnp + proximal SR x4")]
    assert all(r["ms_per_step"] > 0 and "loop_ms_per_step" in r for r in saved["loop"])
    assert all(r["dps_ms_per_step"] > 0 and r["forward_only_ms_per_step"] > 0 for r in saved["memory"])
    assert not any("peak_mib" in k for r in saved["memory"] for k in r)  # CUDA only
    text = (tmp_path / "device_check.md").read_text()
    for heading in ("## Network call (ms)", "## Sampler step over the network call", "## Peak memory", "## Checks"):
        assert heading in text
    assert "| fp16 | 2 |" in text


def test_an_output_folder_is_required(device_check, monkeypatch):
    monkeypatch.delenv("OUT", raising=False)
    with pytest.raises(SystemExit) as stop:
        device_check.main(["--tiny", "--no-tests"])
    assert stop.value.code == 2
