"""``guidedinv batch`` end to end on tiny images with a tiny untrained ADM UNet: outputs and report,
independence from the batch size, bad items, kill -9 and resume, a 2-rank torchrun, and a folder
that refuses a different recipe."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import save_tiny_prior
from PIL import Image

from guidedinv.app.batch import collect_items, item_seed
from guidedinv.cli import run
from guidedinv.io import TEMP_SUFFIX, read_image

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
STEPS = ["--set", 'methods.diffpir.steps="4"', "--set", 'methods.pnp.steps="4"']  # whichever the task's default method is


def _save(path: Path, shape: tuple[int, ...], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)).save(path)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("batch")
    save_tiny_prior(d / "tiny.safetensors")
    # 15x16 pads to 16x16 (the network needs even sides), so it shares a group with the 16x16 ones
    shapes = [(16, 16, 3), (15, 16, 3), (16, 16, 3), (20, 24, 3), (16, 16, 3)]
    for i, shape in enumerate(shapes):
        _save(d / "photos" / f"p{i}.png", shape, i)
    _save(d / "photos" / "sub" / "grey.png", (16, 16), 9)
    for i, shape in enumerate(shapes):
        mask = np.zeros(shape[:2], np.uint8)
        mask[i : i + 6, 2 * i : 2 * i + 5] = 255
        Image.fromarray(mask).save(d / f"mask{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(d / "small_mask.png")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    for i in range(6):
        _save(d / "many" / f"m{i}.png", (32, 32, 3), 20 + i)
    return d


def batch(monkeypatch, capsys, work: Path, *args: str) -> tuple[int, str, str]:
    """``guidedinv batch ...`` in this process (the console entry point); exit code, stdout, stderr."""
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "batch", *args, "--model", "tiny.safetensors"])
    with pytest.raises(SystemExit) as stop:
        run()
    out = capsys.readouterr()
    return int(stop.value.code or 0), out.out, out.err


def report(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im).copy()


def test_a_folder_gives_every_output_and_a_report_with_metrics(work, monkeypatch, capsys):
    code, out, err = batch(monkeypatch, capsys, work, "denoise", "photos", "--out", "den", "--simulate", *STEPS)
    assert code == 0, err
    assert "6 restored, 0 already done, 0 failed of 6 items" in out
    rep = report(work / "den")
    assert rep["summary"]["done"] == 6 and rep["summary"]["mean_psnr"] > 10
    ids = [r["id"] for r in rep["items"]]
    assert ids == ["p0.png", "p1.png", "p2.png", "p3.png", "p4.png", "sub/grey.png"]
    for rec in rep["items"]:
        assert rec["status"] == "done" and rec["error"] is None and rec["seconds"] >= 0
        assert 10 < rec["psnr"] < 60 and 0 < rec["ssim"] <= 1 and 0 <= rec["consistency"] < 1
        source, result = read_image(work / "photos" / rec["id"]), read_image(work / "den" / rec["output"])
        assert result.image.shape == source.image.shape  # grey stays grey, 15x16 is cropped back
        assert result.metadata["guidedinv:item"] == rec["id"] and result.metadata["guidedinv:seed"] == str(rec["seed"])
    items = collect_items([str(work / "photos")])
    assert [item_seed(i, 0) for i in items] == [r["seed"] for r in rep["items"]]
    assert "[batch]" in (work / "den" / "recipe.toml").read_text()


def test_a_manifest_sets_scale_seed_output_and_reference(work, monkeypatch, capsys):
    _save(work / "ref.png", (32, 32, 3), 40)
    with Image.open(work / "ref.png") as im:
        im.resize((16, 16), Image.BICUBIC).save(work / "lr.png")
    (work / "sr.csv").write_text("input,scale,seed,output,reference\nlr.png,2,7,big/x2.png,ref.png\n"
                                 "photos/p0.png,4,,x4.png,\n")
    code, _, err = batch(monkeypatch, capsys, work, "superres", "--manifest", "sr.csv", "--out", "sr", "-q",
                         "--set", 'methods.diffpir.steps="3"')
    assert code == 0, err
    recs = {r["id"]: r for r in report(work / "sr")["items"]}
    assert recs["big/x2.png"]["seed"] == 7 and recs["big/x2.png"]["psnr"] is not None
    assert recs["x4.png"]["psnr"] is None and recs["x4.png"]["consistency"] is not None
    assert read_image(work / "sr" / "big" / "x2.png").size == (32, 32)
    assert read_image(work / "sr" / "x4.png").size == (64, 64)


def test_batch_size_does_not_change_any_output(work, monkeypatch, capsys):
    rows = [{"input": f"photos/p{i}.png", "mask": f"mask{i}.png", "id": f"item{i}"} for i in (0, 1, 2, 4)]
    (work / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = {}
    for size in ("1", "3"):
        code, _, err = batch(monkeypatch, capsys, work, "inpaint", "--manifest", "items.jsonl", "--out", f"bs{size}",
                             "--batch-size", size, "-q", *STEPS)
        assert code == 0, err
        outputs[size] = {r["id"]: pixels(work / f"bs{size}" / r["output"]) for r in report(work / f"bs{size}")["items"]}
    assert outputs["1"].keys() == outputs["3"].keys() == {"item0", "item1", "item2", "item4"}
    for key in outputs["1"]:
        assert np.array_equal(outputs["1"][key], outputs["3"][key]), key
    # the per-item masks were used: the known pixels of each item are its input's
    known = np.asarray(Image.open(work / "mask0.png")) < 128
    assert np.abs(outputs["3"]["item0"][known].astype(int) - pixels(work / "photos" / "p0.png")[known]).max() <= 1


def test_a_terminal_sees_an_item_bar_and_a_step_bar_and_quiet_hides_both(work, monkeypatch, capsys):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws its live bars as on a terminal
    monkeypatch.setenv("TTY_INTERACTIVE", "1")
    args = ("denoise", "many/m0.png", "many/m1.png", "--simulate", "--batch-size", "1", *STEPS)
    code, _, err = batch(monkeypatch, capsys, work, *args, "--out", "bars")
    assert code == 0, err
    assert "items" in err and "/2" in err and "steps" in err and "/4" in err  # items done of 2, steps of 4
    assert "-:--:--" in err or re.search(r"\d:\d\d:\d\d", err)  # the elapsed / remaining columns
    code, out, err = batch(monkeypatch, capsys, work, *args, "--out", "bars_quiet", "-q")
    assert code == 0 and err == "" and out == ""


def test_a_bad_item_is_reported_and_skipped_with_exit_code_1(work, monkeypatch, capsys):
    rows = "input,mask\nphotos/p0.png,mask0.png\ncorrupt.png,mask1.png\nphotos/p2.png,small_mask.png\nmissing.png,\n"
    (work / "bad.csv").write_text(rows)
    code, out, err = batch(monkeypatch, capsys, work, "inpaint", "--manifest", "bad.csv", "--out", "bad", *STEPS)
    assert code == 1
    assert "1 restored, 0 already done, 3 failed of 4 items" in out
    recs = {r["id"]: r for r in report(work / "bad")["items"]}
    assert recs["photos/p0.png"]["status"] == "done"
    for key, needle in [("corrupt.png", "corrupt"), ("photos/p2.png", "mask is 8x8"), ("missing.png", "not found")]:
        assert recs[key]["status"] == "failed" and needle in recs[key]["error"] and "\n" not in recs[key]["error"]
        assert f"item {key} failed" in err
    assert sorted(p.name for p in (work / "bad").rglob("*.png")) == ["p0.png"]


def test_a_different_recipe_is_refused_unless_forced(work, monkeypatch, capsys):
    args = ("denoise", "photos/p0.png", "--out", "same", "-q")
    assert batch(monkeypatch, capsys, work, *args, *STEPS)[0] == 0
    code, _, err = batch(monkeypatch, capsys, work, *args, "--set", 'methods.pnp.steps="3"')
    assert code == 2 and "different recipe" in err and "methods.pnp.steps" in err and len(err.strip().splitlines()) == 1
    code, _, err = batch(monkeypatch, capsys, work, *args, "--set", 'methods.pnp.steps="3"', "--force")
    assert code == 0, err
    assert report(work / "same")["items"][0]["status"] == "done"  # redone with the new recipe, not skipped
    assert 'steps = "3"' in (work / "same" / "recipe.toml").read_text()


@pytest.mark.parametrize("args, needle", [
    (["denoise", "--out", "u1"], "no inputs"),
    (["denoise", "nothing/*.png", "--out", "u2"], "matches no image files"),
    (["denoise", "photos/p0.png", "photos/sub/../p0.png", "photos/p1.png", "--out", "u3", "--manifest", "dup.csv"], "share the id"),
    (["denoise", "--manifest", "unknown.csv", "--out", "u4"], "unknown field"),
    (["denoise", "photos", "--out", "u5", "--set", "method=magic"], "unknown method"),
])
def test_usage_errors_are_one_line_and_exit_code_2(work, monkeypatch, capsys, args, needle):
    (work / "dup.csv").write_text("input,id\nphotos/p2.png,p1.png\n")
    (work / "unknown.csv").write_text("input,colour\nphotos/p0.png,red\n")
    code, _, err = batch(monkeypatch, capsys, work, *args)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (work / args[args.index("--out") + 1] / "report.json").exists()


def test_kill_9_then_resume_loses_nothing_and_redoes_nothing(work):
    out = work / "killed"
    cmd = [sys.executable, "-m", "guidedinv", "batch", "denoise", "many", "--out", str(out), "--model", "tiny.safetensors",
           "--batch-size", "1", "-q", "--set", 'methods.diffpir.steps="20"']
    proc = subprocess.Popen(cmd, cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while not list(out.glob("m*.png")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("m*.png")}
    assert 1 <= len(before) < 6, "the batch should be killed part-way"
    for name in before:  # whatever was written is complete
        assert read_image(out / name).size == (32, 32)
    (out / f".m5.png.0123456789ab{TEMP_SUFFIX}").write_bytes(b"\x89PNG half")  # as if killed while writing
    again = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    recs = {r["id"]: r for r in report(out)["items"]}
    assert len(recs) == 6 and all(r["status"] in ("done", "skipped") for r in recs.values())
    assert {k for k, r in recs.items() if r["status"] == "skipped"} == set(before)
    assert all(recs[k]["psnr"] is None and recs[k]["consistency"] is not None for k in recs)
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before  # not recomputed
    for k in recs:
        assert read_image(out / k).size == (32, 32)
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def test_two_rank_torchrun_does_every_item_exactly_once(work):
    out = work / "ranks"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "guidedinv",
           "batch", "denoise", "photos", "--out", str(out), "--model", "tiny.safetensors", "--simulate", *STEPS]
    done = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    # the counts are summed over the ranks: an item done twice would make more than 6
    assert "6 restored, 0 already done, 0 failed of 6 items" in done.stdout
    rep = report(out)
    assert rep["world_size"] == 2 and rep["summary"]["done"] == 6
    ids = [r["id"] for r in rep["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 6
    assert [r["rank"] for r in rep["items"]] == [0, 1, 0, 1, 0, 1]  # items[rank::2]
    assert not (out / "report.parts").exists()
    single = work / "den"  # the one-process run of the first test: the same results
    if (single / "report.json").exists():
        for rec in rep["items"]:
            assert np.array_equal(pixels(out / rec["output"]), pixels(single / rec["output"]))


def test_ranks_without_a_process_group_merge_their_parts(work):
    """WORLD_SIZE/RANK set by a launcher without MASTER_ADDR: no barrier; each rank merges at its end."""
    from guidedinv.app.batch import Ranks, run_batch
    from guidedinv.app.recipes import apply_overrides, load_recipe
    from guidedinv.defaults import load_prior

    recipe = apply_overrides(load_recipe("denoise"), ['methods.pnp.steps="2"', f'model="{work / "tiny.safetensors"}"'])
    items = collect_items([str(work / "photos")])
    prior = load_prior(str(work / "tiny.safetensors"), "cpu")
    first = run_batch(items, recipe, prior, work / "parts", ranks=Ranks(1, 2))
    assert (first.done, first.failed) == (3, 0)
    assert {r["status"] for r in report(work / "parts")["items"]} == {"pending", "done"}  # rank 0 has not run yet
    second = run_batch(items, recipe, prior, work / "parts", ranks=Ranks(0, 2))
    assert (second.done, second.failed) == (3, 0)
    recs = report(work / "parts")["items"]
    assert [r["status"] for r in recs] == ["done"] * 6 and [r["rank"] for r in recs] == [0, 1, 0, 1, 0, 1]


@pytest.mark.parametrize("make_args", [
    lambda w: ("denoise", "photos/p0.png", "--out", "photos"),  # a named file into its own folder
    lambda w: ("denoise", "--manifest", "self.csv", "--out", "."),  # a manifest row whose output is its input
    lambda w: ("inpaint", "--manifest", "maskout.csv", "--out", "."),  # ... or its mask
])
def test_batch_never_writes_over_its_inputs(work, monkeypatch, capsys, make_args):
    (work / "self.csv").write_text("input,output\nphotos/p1.png,photos/p1.png\n")
    (work / "maskout.csv").write_text("input,mask,output\nphotos/p1.png,m.png,m.png\n")
    import numpy as np
    from PIL import Image

    with Image.open(work / "photos" / "p1.png") as im:
        Image.fromarray(np.zeros((im.height, im.width), np.uint8)).save(work / "m.png")
    before = {p: p.read_bytes() for p in (work / "photos").iterdir() if p.is_file()} | {work / "m.png": (work / "m.png").read_bytes()}
    code, _, err = batch(monkeypatch, capsys, work, *make_args(work), *STEPS)
    assert code == 2 and "is also the" in err and len(err.strip().splitlines()) == 1, err
    assert {p: p.read_bytes() for p in before} == before


# -- one batch per output folder: the lock -------------------------------------------------------------
LOCK_FILES = (".guidedinv-batch.lock", ".guidedinv-batch.lock.json")


def test_a_second_batch_on_the_same_folder_is_refused_at_once_and_every_output_is_written_once(work):
    out = work / "locked"
    inputs = {p: p.read_bytes() for p in (work / "many").iterdir()}
    cmd = [sys.executable, "-m", "guidedinv", "batch", "denoise", "many", "--out", str(out), "--model", "tiny.safetensors",
           "--batch-size", "1", "-q", "--set", 'methods.pnp.steps="30"', "--set", 'methods.diffpir.steps="30"']
    first = subprocess.Popen(cmd, cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sidecar = out / LOCK_FILES[1]
    deadline = time.time() + 60
    while not sidecar.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    assert json.loads(sidecar.read_text())["pid"] == first.pid
    seen: dict[str, int] = {}  # output -> the inode it had when first seen: a rewrite would replace it
    second = subprocess.Popen(cmd, cwd=work, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while first.poll() is None or second.poll() is None:
        for p in out.glob("m*.png"):
            seen.setdefault(p.name, p.stat().st_ino)
        time.sleep(0.005)
    err2 = second.stderr.read()
    assert first.returncode == 0, first.stderr.read()
    assert second.returncode == 2 and second.stdout.read() == "", err2
    assert len(err2.strip().splitlines()) == 1 and "Traceback" not in err2, err2
    assert f"is in use by another guidedinv batch (pid {first.pid} on " in err2 and "use another --out" in err2
    rep = report(out)
    assert rep["summary"]["done"] == 6 and {r["status"] for r in rep["items"]} == {"done"}  # none skipped: nobody else wrote
    assert {p.name: p.stat().st_ino for p in out.glob("m*.png")} == {n: seen.get(n) for n in seen} and len(seen) == 6
    assert sorted(p.name for p in out.iterdir()) == [f"m{i}.png" for i in range(6)] + ["recipe.toml", "report.json"]  # lock gone
    assert {p: p.read_bytes() for p in inputs} == inputs


def test_ctrl_c_releases_the_lock_and_a_rerun_resumes(work):
    out = work / "interrupted"
    cmd = [sys.executable, "-m", "guidedinv", "batch", "denoise", "many", "--out", str(out), "--model", "tiny.safetensors",
           "--batch-size", "1", "-q", "--set", 'methods.pnp.steps="10"', "--set", 'methods.diffpir.steps="10"']
    proc = subprocess.Popen(cmd, cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(out.glob("m*.png")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    assert "interrupted" in proc.stderr.read()
    assert not [name for name in LOCK_FILES if (out / name).exists()]
    again = subprocess.run(cmd, cwd=work, env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "note" not in again.stderr, again.stderr
    assert report(out)["summary"]["done"] + report(out)["summary"]["skipped"] == 6


@pytest.mark.parametrize("host", ["here", "elsewhere"])
def test_the_sidecar_of_a_dead_holder_is_taken_over_with_a_one_line_note(work, monkeypatch, capsys, host):
    import socket

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    out = work / f"stale_{host}"
    out.mkdir()
    holder = {"pid": gone.pid, "host": socket.gethostname() if host == "here" else "other-host", "started": 0, "rank": 0,
              "world": 1, "command": "guidedinv batch ..."}
    (out / LOCK_FILES[1]).write_text(json.dumps(holder))
    (out / LOCK_FILES[0]).write_text("")
    code, _, err = batch(monkeypatch, capsys, work, "denoise", "photos/p0.png", "--out", str(out), "-q", *STEPS)
    assert code == 0, err
    why = "which is no longer running" if host == "here" else "which no longer holds it"
    assert err.strip() == f"guidedinv: note: took over the lock of {out} left by pid {gone.pid} on {holder['host']}, " \
                          f"started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(0))}, {why}"
    assert not [name for name in LOCK_FILES if (out / name).exists()]


def test_lock_modes_single_grouped_and_ranks_without_a_group(tmp_path):
    from guidedinv.app.batch.folder import FolderLock
    from guidedinv.errors import InputError

    with FolderLock(tmp_path):  # a single process: every other kind of run is refused
        for other in (FolderLock(tmp_path), FolderLock(tmp_path, 1, 2), FolderLock(tmp_path, 0, 2, grouped=True, agree=int)):
            with pytest.raises(InputError, match=f"in use by another guidedinv batch \\(pid {os.getpid()} on "):
                other.acquire()
        with pytest.raises(InputError, match="rank 0 says who"):  # rank 1 of a job whose rank 0 was refused
            FolderLock(tmp_path, 1, 2, grouped=True, agree=lambda refused: refused + 1).acquire()
    # the ranks of one job without a process group share the folder; a single process and the same rank of another job do not
    with FolderLock(tmp_path, 0, 2), FolderLock(tmp_path, 1, 2):
        with pytest.raises(InputError, match="rank 0 of 2"):
            FolderLock(tmp_path).acquire()
        with pytest.raises(InputError, match="in use"):
            FolderLock(tmp_path, 1, 3).acquire()
    # a torchrun job: rank 0 holds the lock, the other ranks hold nothing and are not refused
    with FolderLock(tmp_path, 0, 2, grouped=True, agree=int) as rank0, FolderLock(tmp_path, 1, 2, grouped=True, agree=int) as rank1:
        assert len(rank0.held) == 1 and rank1.held == []
        with pytest.raises(InputError):
            FolderLock(tmp_path).acquire()
    assert list(tmp_path.iterdir()) == []  # every lock file removed by its owner


@pytest.mark.parametrize("args, code, needle", [
    (["--model", "missing.safetensors"], 3, "--model missing.safetensors: neither an existing file nor a known model name"),
    (["--model", "no-such-registry-name"], 3, "neither an existing file nor a known model name"),
    (["--device", "meta"], 2, "--device meta: expected auto, cpu, cuda, cuda:N or mps"),
    (["--device", "banana"], 2, "unknown device 'banana'"),
    (["--device", "cuda:7"], 2, "--device cuda:7"),
    (["--dtype", "fp64"], 2, "--dtype fp64: expected one of fp32, fp16, bf16"),
    (["-b", "0"], 2, "--batch-size 0: expected a whole number >= 1"),
    (["--batch-size", "-3"], 2, "--batch-size -3"),
    (["--model", "corrupt.png"], 3, "corrupt.png"),  # exists, but is no checkpoint: found when it loads, still before any write
])
def test_a_bad_model_device_dtype_or_batch_size_writes_nothing(work, monkeypatch, capsys, args, code, needle):
    out = work / f"upfront_{abs(hash(tuple(args)))}"
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "batch", "denoise", "photos", "--out", str(out), *args, *STEPS])
    with pytest.raises(SystemExit) as stop:
        run()
    err = capsys.readouterr().err
    assert stop.value.code == code and needle in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "recipe.toml").exists() and not (out / "report.json").exists()
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []


# ---- editing: `guidedinv batch edit` with the manifest's mask column as float edit weights

TOY_EDIT = ["--model", "toy-prior", "--tile", "0"]
EDIT_SETS = ["--set", "methods.sdedit.strength=0.4", "--set", 'methods.sdedit.steps="logsnr6"']


def cli(monkeypatch, capsys, work: Path, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "argv", ["guidedinv", *args])
    with pytest.raises(SystemExit) as stop:
        run()
    out = capsys.readouterr()
    return int(stop.value.code or 0), out.out, out.err


def test_batch_edit_with_manifest_masks_equals_single_edits(work, monkeypatch, capsys):
    soft = np.tile(np.linspace(0, 255, 16).round().astype(np.uint8), (16, 1))  # 0 on the left: kept; grey blends
    soft[:, :4] = 0
    Image.fromarray(soft).save(work / "soft_mask.png")
    rows = [{"input": "photos/p0.png", "mask": "soft_mask.png", "seed": 5, "id": "soft"},
            {"input": "photos/p2.png", "mask": "mask2.png", "seed": 6, "id": "hard"},
            {"input": "photos/p4.png", "seed": 7, "id": "whole"}]
    (work / "edits.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = cli(monkeypatch, capsys, work, "batch", "edit", "--manifest", "edits.jsonl", "--out", "edited",
                       "-b", "3", "-q", *TOY_EDIT, *EDIT_SETS)
    assert code == 0, err
    recs = {r["id"]: r for r in report(work / "edited")["items"]}
    assert all(r["status"] == "done" for r in recs.values()), recs
    for row in rows:
        mask = ["--mask", row["mask"]] if "mask" in row else []
        out = f"single_{row['id']}.png"
        code, _, err = cli(monkeypatch, capsys, work, "edit", row["input"], "-o", out, "--seed", str(row["seed"]), "-q",
                           *mask, *TOY_EDIT, "--strength", "0.4", "--steps", "logsnr6")
        assert code == 0, err
        assert np.array_equal(pixels(work / "edited" / recs[row["id"]]["output"]), pixels(work / out)), row["id"]
    # the masks were the items' own: weight 0 keeps the input exactly, the edited region changed
    inp = {r["id"]: pixels(work / r["input"]) for r in rows}
    res = {r["id"]: pixels(work / "edited" / recs[r["id"]]["output"]) for r in rows}
    keep = np.asarray(Image.open(work / "mask2.png")) < 128
    assert np.array_equal(res["hard"][keep], inp["hard"][keep]) and not np.array_equal(res["hard"][~keep], inp["hard"][~keep])
    assert np.array_equal(res["soft"][:, :4], inp["soft"][:, :4]) and not np.array_equal(res["soft"][:, 8:], inp["soft"][:, 8:])
    assert not np.array_equal(res["whole"], inp["whole"])


@pytest.mark.parametrize("sets, needle", [
    (["--set", "methods.sdedit.ilvr=4", "--set", 'operator.reference="photos/p0.png"'], "no ILVR reference"),
    (["--set", "guidance.class=1", "--set", 'guidance.classifier="toy-classifier"'], "no classifier guidance"),
])
def test_batch_edit_refuses_ilvr_and_classifier_guidance_up_front(work, monkeypatch, capsys, sets, needle):
    code, out, err = cli(monkeypatch, capsys, work, "batch", "edit", "photos", "--out", "edit_refused", *TOY_EDIT, *sets)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (work / "edit_refused").exists()


def test_an_items_recipe_names_its_own_mask_and_reproduces_it_alone(work, monkeypatch, capsys):
    """The recipe written into an item's PNG names the manifest's mask for that item (not the folder
    recipe's "box"): `guidedinv inpaint IMAGE --task RECIPE` with that recipe alone gives its pixels."""
    # p1 is 15x16: the batch pads it to the network multiple, the command alone too
    (work / "items.jsonl").write_text(json.dumps({"input": "photos/p1.png", "mask": "mask1.png", "id": "one"}) + "\n")
    code, _, err = batch(monkeypatch, capsys, work, "inpaint", "--manifest", "items.jsonl", "--out", "own", "-q", *STEPS)
    assert code == 0, err
    output = work / "own" / report(work / "own")["items"][0]["output"]
    with Image.open(output) as im:
        recipe = im.text["guidedinv:recipe"]
    assert 'mask = "mask1.png"' in recipe, recipe
    (work / "one.toml").write_text(recipe)
    monkeypatch.setattr(sys, "argv", ["guidedinv", "inpaint", "photos/p1.png", "--task", "one.toml", "--model",
                                      "tiny.safetensors", "-o", "alone.png", "-q"])
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code in (0, None), capsys.readouterr().err
    assert np.array_equal(pixels(work / "alone.png"), pixels(output))
