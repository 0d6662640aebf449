"""A request is parsed and checked once, before any file is read or written and before any model
loads: every class of bad request is one line on stderr, exit 2, no traceback, nothing written, and
the model loader never called (it is replaced by a stub that fails the test if reached)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from guidedinv import defaults
from guidedinv.app.methods import METHODS, get_method
from guidedinv.app.request import apply_overrides, build_request, load_preset, parse_request
from guidedinv.cli import run
from guidedinv.errors import InputError


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    mask = np.zeros((20, 24), np.uint8)
    mask[5:12, 6:15] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(np.full((9, 9), 255, np.uint8)).save(tmp_path / "k.png")
    (tmp_path / "bad.toml").write_text('task = "denoise"\nmethod = "pnp"\n[operator]\nkind = "identity"\n'
                                       '[methods.pnp]\nlam = "x"\n')
    (tmp_path / "good.toml").write_text('task = "denoise"\nmethod = "pnp"\n[operator]\nkind = "identity"\n')
    (tmp_path / "r.recipe.toml").write_text(Path(defaults.__file__).parent.joinpath("app/presets/denoise.toml").read_text())
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    (tmp_path / "ro.png").write_bytes((tmp_path / "x.png").read_bytes())
    (tmp_path / "ro.png").chmod(0o444)
    (tmp_path / "rodir").mkdir()
    (tmp_path / "rodir").chmod(0o555)
    os.symlink(tmp_path / "x.png", tmp_path / "link.png")
    os.link(tmp_path / "x.png", tmp_path / "hard.png")
    return tmp_path


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in folder.rglob("*")}


def _never_load(*args, **kwargs):
    raise AssertionError("the model was loaded for a bad request")


BAD = {
    # steps
    "steps-text": (["superres", "x.png", "--steps", "abc"], "--steps abc"),
    "steps-zero": (["superres", "x.png", "--steps", "0"], "at least 1"),
    "steps-too-many": (["superres", "x.png", "--steps", "1001"], "1001"),
    "steps-logsnr1": (["superres", "x.png", "--steps", "logsnr1"], "logsnrN needs 2 <= N"),
    "steps-ddim-inexact": (["superres", "x.png", "--steps", "ddim37"], "ddim37"),
    "steps-classical": (["superres", "x.png", "--method", "lanczos", "--steps", "10"], "runs no steps"),
    "steps-in-set": (["denoise", "x.png", "--set", "methods.pnp.steps=-3"], "methods.pnp.steps"),
    # scale and operator values
    "scale-negative": (["superres", "x.png", "--scale", "-2"], "--scale -2"),
    "scale-zero": (["superres", "x.png", "--scale", "0"], "--scale 0"),
    "scale-huge": (["superres", "x.png", "--scale", "1000"], "<= 32"),
    "mode": (["superres", "x.png", "--mode", "nearest"], "one of bicubic, average"),
    "kernel-inf": (["deblur", "x.png", "--kernel", "gaussian:inf"], "0 < SIGMA <= 100"),
    "kernel-motion": (["deblur", "x.png", "--kernel", "motion:-1"], "motion:SEED"),
    "kernel-missing": (["deblur", "x.png", "--kernel", "nofile.npy"], "no such kernel file"),
    "kernel-size-even": (["deblur", "x.png", "--kernel-size", "8"], "odd"),
    "kernel-size-huge": (["deblur", "x.png", "--kernel-size", "100001"], "<= 1001"),
    "kernel-larger-than-image": (["deblur", "x.png", "--kernel-size", "31"], "--kernel gaussian:3.0"),
    "kernel-file-corrupt": (["deblur", "x.png", "--kernel", "bad.npy"], "bad.npy"),
    "mask-spec": (["inpaint", "x.png", "--mask", "circle"], "--mask circle"),
    "sigma-negative": (["denoise", "x.png", "--sigma-y", "-0.5"], "--sigma-y -0.5"),
    "sigma-nan": (["denoise", "x.png", "--sigma", "nan"], "--sigma nan"),
    # seeds
    "seed-text": (["denoise", "x.png", "--set", "seed=abc"], "seed = 'abc'"),
    "seed-negative": (["denoise", "x.png", "--set", "seed=-1"], "seed = -1"),
    "seed-huge": (["denoise", "x.png", "--seed", str(2**70)], "--seed"),
    # --set types and ranges
    "zeta-range": (["denoise", "x.png", "--set", "methods.diffpir.zeta=2"], "methods.diffpir.zeta = 2"),
    "lam-type": (["denoise", "x.png", "--set", "methods.pnp.lam=abc"], "methods.pnp.lam = 'abc'"),
    "sigma-set-nan": (["denoise", "x.png", "--set", "noise.sigma_y=nan"], "noise.sigma_y"),
    "jump-zero": (["inpaint", "x.png", "m.png", "--set", "methods.repaint.jump_length=0"], "jump_length = 0"),
    "bool-for-number": (["denoise", "x.png", "--set", "methods.pnp.lam=true"], "methods.pnp.lam = True"),
    "tile": (["denoise", "x.png", "--tile", "big"], "--tile big"),
    "memory": (["denoise", "x.png", "--memory", "banana"], "--memory 'banana'"),
    "model-flags-key": (["denoise", "x.png", "--model-flags", "bogus=1"], "--model-flags bogus=1"),
    "model-flags-value": (["denoise", "x.png", "--model-flags", "num_heads=abc"], "num_heads"),
    "model-flags-type": (["denoise", "x.png", "--set", "model_flags=3"], "model_flags = 3"),
    "device": (["denoise", "x.png", "--device", "meta"], "--device meta"),
    "dtype": (["denoise", "x.png", "--dtype", "fp64"], "--dtype fp64"),
    # whole sections replaced by scalars
    "operator-scalar": (["denoise", "x.png", "--set", "operator=1"], "operator is a table"),
    "methods-scalar": (["denoise", "x.png", "--set", "methods=3"], "methods is a table"),
    "noise-scalar": (["denoise", "x.png", "--set", "noise=0.1"], "noise is a table"),
    "method-table-scalar": (["denoise", "x.png", "--set", "methods.pnp=2"], "methods.pnp is a table"),
    # rule options
    "rule-unknown": (["denoise", "x.png", "--set", "methods.diffpir.rule=banana"], "methods.diffpir.rule = 'banana'"),
    "eta-negative": (["denoise", "x.png", "--set", "methods.ddnm.eta=-1"], "methods.ddnm.eta = -1"),
    "ddnm-noisy-rule": (["superres", "x.png", "--method", "ddnm", "--set", 'methods.ddnm.rule="dpm++2m"'],
                        "use rule = \"ddim\""),
    "warm-start": (["superres", "x.png", "--set", 'methods.pnp.init="biharmonic"'], "does not solve superres"),
    # unknown keys and methods
    "unknown-top": (["denoise", "x.png", "--set", "foo=1"], "no key 'foo'"),
    "unknown-setting": (["denoise", "x.png", "--set", "methods.pnp.foo=1"], "no key 'foo'"),
    "unknown-method-table": (["denoise", "x.png", "--set", "methods.magic.steps=3"], "no key 'magic'"),
    "unknown-method": (["denoise", "x.png", "--method", "magic"], "unknown method"),
    "wrong-task-method": (["denoise", "x.png", "--method", "repaint"], "inpaint only"),
    "set-syntax": (["denoise", "x.png", "--set", "novalue"], "expected KEY=VALUE"),
    "task-file-key": (["denoise", "x.png", "--task", "bad.toml"], "--task bad.toml: methods.pnp.lam = 'x'"),
    "task-file-kind": (["superres", "x.png", "--task", "good.toml"], "not 'superres'"),
    "class-with-classical": (["denoise", "x.png", "--method", "tv_denoise", "--class", "1"], "guided method"),
    # output clashes and unwritable outputs
    "out-is-input": (["denoise", "x.png", "-o", "x.png"], "is also IMAGE"),
    "compare-is-input": (["denoise", "x.png", "--compare", "x.png"], "is also IMAGE"),
    "out-is-mask": (["inpaint", "x.png", "m.png", "-o", "m.png"], "is also MASK"),
    "compare-is-mask": (["inpaint", "x.png", "m.png", "--compare", "m.png"], "is also MASK"),
    "out-is-kernel": (["deblur", "x.png", "--kernel", "k.png", "-o", "k.png"], "is also --kernel"),
    "trajectory-suffix": (["denoise", "x.png", "--trajectory", "t.png"], "must end in .gif"),
    "out-suffix": (["denoise", "x.png", "-o", "out.jpg"], "must end in .png"),
    "out-symlink": (["denoise", "x.png", "-o", "link.png"], "is also IMAGE"),
    "out-hardlink": (["denoise", "x.png", "-o", "hard.png"], "is also IMAGE"),
    "out-and-compare": (["denoise", "x.png", "-o", "a.png", "--compare", "a.png"], "are the same file"),
    "recipe-is-task-file": (["denoise", "x.png", "--task", "r.recipe.toml", "-o", "r.png"], "is also --task"),
    "out-read-only": (["denoise", "x.png", "-o", "ro.png"], "read-only"),
    "out-read-only-folder": (["denoise", "x.png", "-o", "rodir/out.png"], "not writable"),
    "out-under-a-file": (["denoise", "x.png", "-o", "afile/out.png"], "is a file, not a folder"),
    "out-is-folder": (["denoise", "x.png", "-o", "rodir"], "must end in .png"),
    "inpaint-two-masks": (["inpaint", "x.png", "m.png", "--mask", "box"], "not both"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_request_is_one_line_exit_2_nothing_written_no_model(work, monkeypatch, capsys, name):
    args, needle = BAD[name]
    monkeypatch.chdir(work)
    monkeypatch.setattr(defaults, "load_prior", _never_load)
    monkeypatch.setattr(sys, "argv", ["guidedinv", *args])
    before = _snapshot(work)
    with pytest.raises(SystemExit) as stop:
        run()
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("guidedinv: error: "), err
    assert "Traceback" not in err
    assert needle in lines[0], lines[0]
    assert _snapshot(work) == before


def test_a_good_request_reaches_the_model(work, monkeypatch, capsys):
    """The stub above is reached by a valid request (so the matrix is not passing vacuously)."""
    monkeypatch.chdir(work)
    monkeypatch.setattr(defaults, "load_prior", _never_load)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "denoise", "x.png", "--steps", "logsnr5", "-q"])
    with pytest.raises(AssertionError, match="model was loaded"):
        run()


def test_classical_method_needs_no_model(work, monkeypatch):
    monkeypatch.chdir(work)
    monkeypatch.setattr(defaults, "load_prior", _never_load)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "denoise", "x.png", "--method", "tv_denoise", "-q", "-o", "tv.png"])
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code in (0, None) and (work / "tv.png").is_file() and (work / "tv.recipe.toml").is_file()


def test_every_preset_parses_and_holds_only_known_keys():
    for task in ("inpaint", "superres", "deblur", "denoise"):
        request = parse_request(load_preset(task), task)
        assert request.task == task and request.steps
        resolved = parse_request(request.recipe, "resolved")  # the written recipe reads back to the same request
        assert resolved == request


def test_method_defaults_live_in_the_methods_and_presets_only_differ():
    """No preset repeats a method default (they live once, in the method object)."""
    for task in ("inpaint", "superres", "deblur", "denoise"):
        for name, table in load_preset(task).get("methods", {}).items():
            defaults_ = METHODS[name].defaults()
            repeated = {k for k, v in table.items() if defaults_.get(k) == v}
            assert not repeated, f"preset {task}: methods.{name} repeats the defaults {repeated}"


def test_each_preset_comment_lists_the_methods_of_its_task():
    """The comment after ``method = ...`` in a shipped preset names exactly the registry's methods
    for the task's operator (a method added to the registry shows up in the file users copy)."""
    import re
    from importlib.resources import files

    from guidedinv.app.methods import methods_for_kind

    for task in ("inpaint", "superres", "deblur", "denoise"):
        text = (files("guidedinv.app") / "presets" / f"{task}.toml").read_text()
        listed = re.search(r'^method = "[a-z_]+"\s+#(.*)$', text, re.M).group(1)
        assert [n.strip() for n in listed.split("|")] == list(methods_for_kind(load_preset(task)["operator"]["kind"])), task


def test_every_setting_default_passes_its_own_check():
    for method in METHODS.values():
        for s in method.settings:
            if s.default is not None:
                assert s.check(s.default, s.name) == s.default


def test_apply_overrides_refuses_unknown_keys_as_the_cli_does():
    with pytest.raises(InputError, match="no key 'zeta'"):
        apply_overrides(load_preset("denoise"), ["methods.pnp.zeta=0.1"])
    with pytest.raises(InputError, match="no key 'bogus'"):
        apply_overrides(load_preset("denoise"), ["bogus=1"])


def test_operator_tables_are_checked_by_operator_spec_with_the_same_keys_for_set_and_recipe():
    from guidedinv.app import operator_spec, request

    assert request.OperatorSpec is operator_spec.OperatorSpec and request.kernel_path is operator_spec.kernel_path
    assert request.KIND_OF_TASK is operator_spec.KIND_OF_TASK and request.KIND_OF_TASK["deblur"] == "blur"
    assert operator_spec.operator_keys("blur") == ["kind", "kernel", "size", "boundary"]
    assert operator_spec.operator_keys("identity") == operator_spec.operator_keys("no such kind") == ["kind"]
    with pytest.raises(InputError, match=r"^--set operator.mode=1: operator has no key 'mode' \(accepted: kind, kernel, size"):
        apply_overrides(load_preset("deblur"), ["operator.mode=1"])
    recipe = {**load_preset("deblur"), "operator": {"mode": "average"}}
    with pytest.raises(InputError, match=r"^recipe: operator.mode: no such key \(accepted: kind, kernel, size, boundary\)$"):
        parse_request(recipe)
    spec = parse_request({**recipe, "operator": {"size": 5}}).operator
    assert spec == operator_spec.OperatorSpec("blur", kernel="gaussian:3.0", size=5, boundary="padded")


def test_options_override_the_preset_then_set_overrides_options():
    r = build_request("superres", None, [("--steps 5", 'methods.pnp.steps="5"')], ['methods.pnp.steps="7"'])
    assert r.steps == "7" and r.settings["lam"] == 0.3  # the preset's lam, the method's other defaults
    assert get_method("pnp").cost(r.settings).forward == 7


def test_a_request_that_cannot_fit_is_refused_before_the_model_loads(work, monkeypatch, capsys):
    import guidedinv.memory_estimate as estimate

    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 5_000_000)  # 5 MB free
    monkeypatch.chdir(work)
    monkeypatch.setattr(defaults, "load_prior", _never_load)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "superres", "x.png", "--scale", "8", "-o", "big.png"])
    before = _snapshot(work)
    with pytest.raises(SystemExit) as stop:
        run()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "is available" in err and len(err.strip().splitlines()) == 1, err
    assert _snapshot(work) == before
