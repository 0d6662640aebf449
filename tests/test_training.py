"""The training loop: resume is exact, the loss falls on a learnable toy, exports load back."""
from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors import safe_open

from guidedinv.models.adm import ADMConfig
from guidedinv.training import CropSampler, Trainer, TrainSettings, export_safetensors

TINY = ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 1), attention_ds=(), out_channels=3, head_channels=None)


def stripes(n: int = 6, size: int = 20) -> list[torch.Tensor]:
    """Synthetic uint8 images: vertical stripes of random period, a structure a tiny net can learn."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        period = int(torch.randint(2, 6, (1,), generator=g))
        row = ((torch.arange(size) // period) % 2 * 255).to(torch.uint8)
        out.append(row.expand(3, size, size).contiguous())
    return out


def settings(steps: int, **kw) -> TrainSettings:
    return TrainSettings(steps=steps, batch=4, checkpoint_every=2, log_every=1, network=TINY.to_dict(), **kw)


def test_resume_is_bit_identical_to_an_uninterrupted_run(tmp_path):
    data = CropSampler(stripes(), 16)
    straight = Trainer(settings(4), data, tmp_path / "a")
    straight.train()
    first = Trainer(settings(2), data, tmp_path / "b")
    first.train()
    resumed = Trainer(settings(4), data, tmp_path / "b")
    assert resumed.resume() and resumed.step == 2
    resumed.train()
    for (name, p), q in zip(straight.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(p, q), name
    rows = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]


def test_resume_refuses_other_settings(tmp_path):
    data = CropSampler(stripes(), 16)
    Trainer(settings(2), data, tmp_path).train()
    other = Trainer(settings(2, lr=1e-3), data, tmp_path)
    with pytest.raises(ValueError, match="lr"):
        other.resume()


def test_training_makes_a_better_denoiser_on_a_learnable_toy(tmp_path):
    # the v-loss averaged over all t has a high floor (x0 is unknowable at t ~ T), so measure what
    # training is for: the x0 error at a fixed, moderate noise level on a fixed held-out batch
    data = CropSampler(stripes(), 16)
    trainer = Trainer(TrainSettings(steps=60, batch=8, lr=3e-3, warmup=5, log_every=10, checkpoint_every=1000,
                                    network=TINY.to_dict()), data, tmp_path)
    x0, _ = data.batch(16, torch.Generator().manual_seed(99))
    t = torch.full((16,), 150)
    ab = float(trainer.schedule.alpha_bar(150))
    x_t = ab**0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(98))

    def x0_error():
        with torch.no_grad():
            v = trainer.net(x_t, t)
        return float(((ab**0.5 * x_t - (1 - ab) ** 0.5 * v) - x0).pow(2).mean())

    before = x0_error()
    trainer.train()
    after = x0_error()
    assert after < 0.5 * before, (before, after)


def test_crops_are_in_range_and_augmented():
    images = [torch.arange(3 * 20 * 24, dtype=torch.int64).reshape(3, 20, 24).remainder(256).to(torch.uint8)]
    data = CropSampler(images + [torch.zeros(3, 8, 8, dtype=torch.uint8)], 16)
    assert data.skipped == 1  # smaller than the crop
    x, labels = data.batch(32, torch.Generator().manual_seed(1))
    assert x.shape == (32, 3, 16, 16) and labels is None
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert len({tuple(c.flatten()[:5].tolist()) for c in x}) > 8  # different crops and orientations


def test_export_carries_its_own_description(tmp_path):
    net = Trainer(settings(1), CropSampler(stripes(), 16), tmp_path).ema
    path = export_safetensors(net, TINY, tmp_path / "m.safetensors", schedule="linear", prediction="v", kind="prior",
                              card={"steps": 1})
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        assert set(f.keys()) == set(net.state_dict())
    assert ADMConfig.from_dict(json.loads(meta["config"])) == TINY
    assert meta["prediction"] == "v" and meta["schedule"] == "linear" and json.loads(meta["card"]) == {"steps": 1}


# -- the commands on labelled folders (ImageFolder layout) ------------------------------------------
def _labelled_folder(root, per_class=6, size=20):
    """Two classes a classifier can tell apart at low noise: reddish and bluish noisy images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for _k, name in enumerate(["blue", "red"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            base = np.array([40, 60, 200] if name == "blue" else [200, 50, 40], dtype=float)
            img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _run(*args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "guidedinv", *args], env=env, capture_output=True, text=True, timeout=300)


def test_train_classifier_and_cond_prior_on_a_labelled_folder_load_back_with_their_classes(tmp_path):
    from guidedinv.models import load_denoiser, load_model

    data = _labelled_folder(tmp_path / "data")
    done = _run("train", "classifier", str(data), "--out", str(tmp_path / "clf"), "--steps", "150", "--crop", "16",
                "--batch", "16", "--channels", "32", "--mult", "1,1", "--lr", "3e-3", "--ema", "0.9", "--device", "cpu",
                "--export-dtype", "fp16", "-q")
    assert done.returncode == 0, done.stderr
    card = json.loads((tmp_path / "clf" / "card.json").read_text())
    assert card["classes"] == ["blue", "red"] and card["export_dtype"] == "fp16"
    clf = load_model(tmp_path / "clf" / "model.safetensors", device="cpu")
    with safe_open(str(tmp_path / "clf" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    # at a low noise level the classifier separates the two colours
    sampler = CropSampler.from_labelled_folder(data, 16)
    x0, labels = sampler.batch(64, torch.Generator().manual_seed(1))
    t = torch.full((64,), 50)
    from guidedinv.schedule import VPSchedule

    ab = VPSchedule.linear().alpha_bar(50)  # the schedule it was trained on (linear, the default)
    x_t = ab ** 0.5 * x0 + (1 - ab) ** 0.5 * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        accuracy = float((clf(x_t, t).argmax(1) == labels).float().mean())
    assert accuracy > 0.9, accuracy  # chance is 0.5

    done = _run("train", "cond-prior", str(data), "--out", str(tmp_path / "cond"), "--steps", "3", "--crop", "16",
                "--channels", "32", "--mult", "1,2", "--res-blocks", "1", "--label-dropout", "0.2", "--device", "cpu", "-q")
    assert done.returncode == 0, done.stderr
    cond = load_denoiser(tmp_path / "cond" / "model.safetensors", device="cpu")
    assert cond.prediction == "v" and cond.num_classes == 2 and cond.null_label_index == 2
    assert json.loads((tmp_path / "cond" / "card.json").read_text())["label_dropout"] == 0.2


@pytest.mark.parametrize("layout, needle", [
    ("loose", "outside a class folder"),
    ("one-class", "at least 2"),
    ("empty-class", "holds no images"),
    ("missing", "no such folder"),
])
def test_bad_labelled_folders_are_one_line_errors(tmp_path, layout, needle):
    from PIL import Image

    root = tmp_path / "data"
    if layout != "missing":
        (root / "a").mkdir(parents=True)
        Image.new("RGB", (20, 20)).save(root / "a" / "0.png")
    if layout == "loose":
        (root / "b").mkdir()
        Image.new("RGB", (20, 20)).save(root / "b" / "0.png")
        Image.new("RGB", (20, 20)).save(root / "stray.png")
    if layout == "empty-class":
        (root / "b").mkdir()
    done = _run("train", "classifier", str(root), "--out", str(tmp_path / "out"), "--steps", "1", "--crop", "16", "-q")
    assert done.returncode == 2 and needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


# -- the command line: resume with changed settings, bad options, bad data, bad checkpoints ---------
import os  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import zlib  # noqa: E402
from pathlib import Path  # noqa: E402

from guidedinv.cli import run as cli_run  # noqa: E402

BASE = ["--crop", "16", "--mult", "1,1", "--res-blocks", "1", "--device", "cpu", "-q", "--steps", "2", "--checkpoint-every", "2"]


def train(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``guidedinv train ...`` in this process (the console entry point): exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["guidedinv", "train", *args])
    with pytest.raises(SystemExit) as stop:
        cli_run()
    out = capsys.readouterr()
    return int(stop.value.code or 0), out.out, out.err


def _images(folder: Path, n: int = 3, size: int = 20, seed: int = 0) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


def _bomb_png(path: Path, side: int = 100_000) -> None:
    """A 200-byte PNG whose header declares side x side pixels (10 Gpx): a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.exists() else {}


def _one_line_error(code: int, err: str, exit_code: int, needle: str) -> None:
    assert code == exit_code, (code, err)
    assert err.startswith("guidedinv: error: ") and len(err.strip().splitlines()) == 1, err
    assert needle in err, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Runs of each command, 2 steps, checkpoint at 2: what the resume tests resume."""
    root = tmp_path_factory.mktemp("resume")
    _images(root / "data")
    _labelled_folder(root / "labelled")
    mp = pytest.MonkeyPatch()
    try:
        for command, data in (("prior", "data"), ("classifier", "labelled"), ("cond-prior", "labelled")):
            mp.chdir(root)
            mp.setattr(sys, "argv", ["guidedinv", "train", command, data, "--out", command, *BASE])
            with pytest.raises(SystemExit) as stop:
                cli_run()
            assert stop.value.code in (0, None)
    finally:
        mp.undo()
    return root


@pytest.mark.parametrize("command, data, change, needle", [
    ("prior", "data", ["--crop", "8"], "--crop 16 -> 8"),
    ("prior", "data", ["--channels", "64"], "--channels 32 -> 64"),
    ("prior", "data", ["--mult", "1,2"], "--mult 1,1 -> 1,2"),
    ("prior", "data", ["--res-blocks", "2"], "--res-blocks 1 -> 2"),
    ("prior", "data", ["--attention", "2"], "--attention none -> 2"),
    ("prior", "data", ["--schedule", "cosine"], "--schedule linear -> cosine"),
    ("prior", "data", ["--batch", "8"], "--batch 16 -> 8"),
    ("prior", "data", ["--lr", "0.001"], "--lr 0.0002 -> 0.001"),
    ("prior", "data", ["--ema", "0.9"], "--ema 0.999 -> 0.9"),
    ("prior", "data", ["--seed", "1"], "--seed 0 -> 1"),
    ("prior", "data", ["--export-dtype", "fp16"], "--export-dtype fp32 -> fp16"),
    ("prior", "other", [], "the training data 3 files"),
    ("prior", "data", ["--crop", "8", "--lr", "0.001"], "--lr 0.0002 -> 0.001, --crop 16 -> 8"),
    ("classifier", "labelled", ["--crop", "8"], "--crop 16 -> 8"),
    ("cond-prior", "labelled", ["--crop", "8"], "--crop 16 -> 8"),
    ("cond-prior", "labelled", ["--label-dropout", "0.2"], "--label-dropout 0.1 -> 0.2"),
])
def test_a_resume_with_changed_settings_is_refused_and_changes_nothing(trained, monkeypatch, capsys, command, data, change,
                                                                      needle):
    monkeypatch.chdir(trained)
    if data == "other":  # one more image than the run was trained on
        _images(trained / "other", n=4)
    before = _snapshot(trained / command)
    args = [*BASE]  # the change replaces the base value or adds to it
    for i in range(0, len(change), 2):
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i : i + 2]
    code, out, err = train(monkeypatch, capsys, command, data, "--out", command, *args)
    _one_line_error(code, err, 2, needle)
    assert "was trained with other settings" in err and "use another --out" in err and out == ""
    assert _snapshot(trained / command) == before  # no step trained, no card or model rewritten
    assert json.loads((trained / command / "card.json").read_text())["crop"] == 16


def test_a_harmless_change_continues_and_says_so_in_one_line(trained, monkeypatch, capsys, tmp_path):
    import shutil

    monkeypatch.chdir(trained)
    shutil.copytree(trained / "prior", tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    state["device"] = "cuda:0"  # as if the first part had run on a GPU
    torch.save(state, tmp_path / "run" / "checkpoint.pt")
    args = [*BASE[:-4], "--steps", "4", "--checkpoint-every", "1"]
    code, out, err = train(monkeypatch, capsys, "prior", "data", "--out", str(tmp_path / "run"), *args)
    assert code == 0, err
    line = out.splitlines()[0]
    assert line == (f"resuming {tmp_path / 'run' / 'checkpoint.pt'} at step 2 of 4 "
                    "(--steps 2 -> 4; --checkpoint-every 2 -> 1; device cuda:0 -> cpu)"), out
    card = json.loads((tmp_path / "run" / "card.json").read_text())
    assert card["steps"] == 4 and card["crop"] == 16
    assert [json.loads(r)["step"] for r in (tmp_path / "run" / "log.jsonl").read_text().splitlines()] == [2, 4]
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"] == 4
    # the same steps again: nothing left to train, said so, exported again
    code, out, err = train(monkeypatch, capsys, "prior", "data", "--out", str(tmp_path / "run"), *args)
    assert code == 0 and "is at step 4 of 4: nothing left to train, exporting it again" in out, (out, err)
    # fewer steps than the checkpoint has: refused
    code, out, err = train(monkeypatch, capsys, "prior", "data", "--out", str(tmp_path / "run"), *BASE)
    _one_line_error(code, err, 2, "is at step 4, past --steps 2; give --steps 4 or more")


def test_an_older_checkpoint_without_crop_or_data_is_resumed_with_a_note(trained, monkeypatch, capsys, tmp_path):
    import shutil

    monkeypatch.chdir(trained)
    shutil.copytree(trained / "prior", tmp_path / "old")
    state = torch.load(tmp_path / "old" / "checkpoint.pt", weights_only=True)
    saved = json.loads(state["settings"])
    for key in ("crop", "export_dtype", "data"):
        del saved[key]
    state["settings"] = json.dumps(saved)
    del state["device"], state["format"]
    torch.save(state, tmp_path / "old" / "checkpoint.pt")
    code, out, err = train(monkeypatch, capsys, "prior", "data", "--out", str(tmp_path / "old"), *BASE[:-4], "--steps", "3")
    assert code == 0, err
    assert "--crop, --export-dtype, the training data not recorded by this older checkpoint: taken as given now" in out


TRAIN_ERRORS = [
    (["--batch", "0"], "--batch 0: expected a whole number >= 1"),
    (["--batch", "-4"], "--batch -4"),
    (["--crop", "0"], "--crop 0: expected a whole number >= 1"),
    (["--crop", "15"], "--crop 15: must be a multiple of 2"),
    (["--lr", "nan"], "--lr nan: expected a finite number > 0"),
    (["--lr", "0"], "--lr 0.0: expected a finite number > 0"),
    (["--lr", "-1e-3"], "--lr -0.001"),
    (["--lr", "inf"], "--lr inf"),
    (["--ema", "1"], "--ema 1.0: expected a number in [0, 1)"),
    (["--ema", "-0.5"], "--ema -0.5"),
    (["--ema", "nan"], "--ema nan"),
    (["--channels", "33"], "must be multiples of 32, the GroupNorm group count"),
    (["--channels", "48", "--mult", "1,2"], "(48, 96) must be multiples of 32"),
    (["--channels", "0"], "--channels 0"),
    (["--schedule", "banana"], "--schedule banana: expected one of linear, cosine"),
    (["--mult", "garbage"], "--mult 'garbage': expected comma-separated whole numbers"),
    (["--mult", ","], "--mult ','"),
    (["--mult", "0,1"], "--mult '0,1'"),
    (["--attention", "3"], "--attention 3: this network's downsample factors are 1,2"),
    (["--res-blocks", "0"], "--res-blocks 0"),
    (["--steps", "0"], "--steps 0: expected a whole number >= 1"),
    (["--steps", "-1"], "--steps -1"),
    (["--seed", "-1"], "--seed -1"),
    (["--seed", str(2**64)], "and < 2**64"),
    (["--checkpoint-every", "0"], "--checkpoint-every 0"),
    (["--export-dtype", "fp64"], "--export-dtype fp64: expected one of fp32, fp16"),
    (["--device", "meta"], "--device meta: expected auto, cpu, cuda, cuda:N or mps"),
    (["--device", "banana"], "unknown device 'banana'"),
    (["--out", "data/0.png"], "--out data/0.png: is a file, not a folder"),
    (["--out", "data/0.png/run"], "data/0.png is a file, not a folder"),
    (["--data", "bomb"], "image declares 100000x100000 pixels"),
    (["--data", "corrupt"], "corrupt or truncated"),
    (["--data", "nothing"], "no such file or folder"),
    (["--data", "empty"], "no images"),
    (["--data", "tiny"], "no training image is at least 16x16"),
]


@pytest.mark.parametrize("args, needle", TRAIN_ERRORS, ids=[" ".join(a) for a, _ in TRAIN_ERRORS])
def test_bad_training_options_and_data_are_one_line_errors_before_anything_is_written(tmp_path, monkeypatch, capsys, args,
                                                                                      needle):
    import shutil

    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    data = "data"
    if args[0] == "--data":
        data = args[1]
        if data == "bomb":  # a good image and a bomb: refused (a silently smaller data set would change what is learnt)
            shutil.copytree(tmp_path / "data", tmp_path / "bomb")
            _bomb_png(tmp_path / "bomb" / "b.png")
        elif data == "corrupt":
            shutil.copytree(tmp_path / "data", tmp_path / "corrupt")
            (tmp_path / "corrupt" / "c.png").write_bytes((tmp_path / "data" / "0.png").read_bytes()[:60])
        elif data in ("empty", "tiny"):
            (tmp_path / data).mkdir()
            if data == "tiny":
                _images(tmp_path / "tiny", size=8)
        args = []
    opts = [*BASE]
    for i in range(0, len(args), 2):
        if args[i] in opts:
            opts[opts.index(args[i]) + 1] = args[i + 1]
        else:
            opts += args[i : i + 2]
    if "--out" not in opts:
        opts += ["--out", "run"]
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, out, err = train(monkeypatch, capsys, "prior", data, *opts)
    _one_line_error(code, err, 2, needle)
    assert not (tmp_path / "run").exists()
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before  # nothing written, nothing changed


def _evil_checkpoint(path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {path.parent / 'PWNED'}",))

    torch.save({"step": 1, "x": Evil()}, path)


@pytest.mark.parametrize("kind, needle", [
    ("malicious", "refused unread: it asks for Python objects other than tensors"),
    ("truncated", "not a readable training checkpoint (PytorchStreamReader failed"),
    ("garbage", "not a readable training checkpoint"),
    ("pickle-garbage", "not a readable training checkpoint (corrupt pickle data)"),
    ("foreign", "not a guidedinv training checkpoint (no valid 'step', 'net', 'ema', 'opt', 'rng', 'settings')"),
    ("tensor", "holds a Tensor, not a guidedinv training checkpoint"),
    ("nan-weights", "holds NaN or infinite values"),
    ("int-weights", "torch.int64, not floating point"),
    ("bad-settings", "its recorded settings are unreadable"),
    ("wrong-shapes", "do not fit the network its settings describe"),
    ("empty", "not a readable training checkpoint"),
])
def test_a_bad_checkpoint_in_the_run_folder_is_one_line_exit_3(trained, tmp_path, monkeypatch, capsys, kind, needle):
    monkeypatch.chdir(trained)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ckpt = run_dir / "checkpoint.pt"
    good = (trained / "prior" / "checkpoint.pt").read_bytes()
    state = torch.load(trained / "prior" / "checkpoint.pt", weights_only=True)
    first = next(iter(state["ema"]))
    if kind == "malicious":
        _evil_checkpoint(ckpt)
    elif kind == "truncated":
        ckpt.write_bytes(good[: len(good) // 2])
    elif kind == "garbage":
        ckpt.write_bytes(os.urandom(300))
    elif kind == "pickle-garbage":
        ckpt.write_bytes(b"\x80\x02" + bytes(range(256)))
    elif kind == "foreign":
        torch.save({"model": {"w": torch.zeros(3)}}, ckpt)
    elif kind == "tensor":
        torch.save(torch.zeros(3), ckpt)
    elif kind == "empty":
        ckpt.write_bytes(b"")
    else:
        if kind == "nan-weights":
            state["ema"][first] = state["ema"][first] * float("nan")
        elif kind == "int-weights":
            state["net"][first] = state["net"][first].long()
            needle = f"weight net.{first} holds " + needle
        elif kind == "bad-settings":
            state["settings"] = "{not json"
        elif kind == "wrong-shapes":
            state["ema"][first] = torch.zeros(7)
        torch.save(state, ckpt)
    before = _snapshot(run_dir)
    code, out, err = train(monkeypatch, capsys, "prior", "data", "--out", str(run_dir), *BASE)
    _one_line_error(code, err, 3, needle)
    assert str(ckpt) in err and "use another --out" in err
    assert _snapshot(run_dir) == before and not (run_dir / "PWNED").exists()


def test_a_diverging_run_is_one_line_and_keeps_its_last_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    code, out, err = train(monkeypatch, capsys, "prior", "data", "--out", "run", *BASE[:-4], "--steps", "8",
                           "--checkpoint-every", "1", "--lr", "1e30")
    _one_line_error(code, err, 2, "training diverged: the loss became")
    assert "try a smaller --lr (now 1e+30) in another --out" in err
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_settings_changed_is_raised_by_the_trainer_itself(tmp_path):
    from guidedinv.training import SettingsChanged

    data = CropSampler(stripes(), 16)
    Trainer(settings(2), data, tmp_path).train()
    with pytest.raises(SettingsChanged, match=r"crop 16 -> 8") as refused:
        Trainer(settings(2), CropSampler(stripes(), 8), tmp_path).resume()
    assert refused.value.differences == [("crop", 16, 8)]
    from dataclasses import replace

    resumed = Trainer(replace(settings(6), checkpoint_every=3, log_every=2), data, tmp_path)  # harmless changes
    assert resumed.resume() and resumed.step == 2


def test_ctrl_c_says_which_checkpoint_is_kept_and_the_same_command_resumes(tmp_path):
    import signal
    import subprocess
    import time

    _images(tmp_path / "data")
    cmd = [sys.executable, "-m", "guidedinv", "train", "prior", "data", "--out", "run", *BASE[:-4], "--steps", "100000",
           "--checkpoint-every", "3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "run" / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    kept = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["step"]
    assert proc.returncode == 130, err
    assert re.fullmatch(rf"guidedinv: interrupted at step \d+; the checkpoint of step {kept} is kept: rerun the same "
                        r"command to resume\n", err), err
    again = subprocess.run([*cmd[:-4], "--steps", str(kept + 1), "--checkpoint-every", "3"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout.startswith(f"resuming run/checkpoint.pt at step {kept} of {kept + 1}"), again
