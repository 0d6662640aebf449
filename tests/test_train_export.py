"""``guidedinv train export``: a run's checkpoint as a model file, the one the run writes at that step."""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from test_training import _images, _one_line_error

from guidedinv.cli import run as cli_run

TINY = ["--crop", "16", "--mult", "1,2,2", "--res-blocks", "1", "--device", "cpu", "-q", "--checkpoint-every", "2"]


def cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``guidedinv ...`` in this process: exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "argv", ["guidedinv", *args])
    with pytest.raises(SystemExit) as stop:
        cli_run()
    out = capsys.readouterr()
    return int(stop.value.code or 0), out.out, out.err


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _train(mp: pytest.MonkeyPatch, *args: str) -> None:
    mp.setattr(sys, "argv", ["guidedinv", "train", *args, *TINY])
    with pytest.raises(SystemExit) as stop:
        cli_run()
    assert stop.value.code in (0, None)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A prior trained 2 steps (kept as 'two') then resumed to 4 ('prior'), and a cond-prior of 2 steps."""
    root = tmp_path_factory.mktemp("export")
    _images(root / "data")
    for k, name in enumerate(("blue", "red")):
        _images(root / "labelled" / name, seed=k + 1)
    mp = pytest.MonkeyPatch()
    try:
        mp.chdir(root)
        _train(mp, "prior", "data", "--out", "prior", "--steps", "2")
        _train(mp, "cond-prior", "labelled", "--out", "cond", "--steps", "2")
        shutil.copytree(root / "prior", root / "two")
        _train(mp, "prior", "data", "--out", "prior", "--steps", "4")
    finally:
        mp.undo()
    # a run that goes on past its checkpoint: the checkpoint of step 2, the log of 4 steps
    (root / "mid").mkdir()
    shutil.copy(root / "two" / "checkpoint.pt", root / "mid" / "checkpoint.pt")
    shutil.copy(root / "prior" / "log.jsonl", root / "mid" / "log.jsonl")
    return root


def _same_model(path: Path, run_file: Path) -> None:
    """Tensor- and metadata-identical (names, dtypes, values; every metadata string, the card's JSON text
    included). Not byte-identical: safetensors writes its metadata map in hash order, which differs from
    one write to the next even of the same file."""
    with safe_open(str(path), "pt") as f, safe_open(str(run_file), "pt") as g:
        assert f.metadata() == g.metadata() and sorted(f.keys()) == sorted(g.keys())
        for k in f.keys():
            a, b = f.get_tensor(k), g.get_tensor(k)
            assert a.dtype == b.dtype and torch.equal(a, b), k
    assert len(path.read_bytes()) == len(run_file.read_bytes())


@pytest.mark.parametrize("run, model", [("prior", "prior"), ("prior/checkpoint.pt", "prior"), ("mid", "two"), ("cond", "cond")])
def test_the_export_of_a_checkpoint_is_the_file_the_run_writes_at_its_step(runs, monkeypatch, capsys, run, model):
    monkeypatch.chdir(runs)
    code, out, err = cli(monkeypatch, capsys, "train", "export", run, "--out", "shipped/x.safetensors")
    assert code == 0, err
    _same_model(runs / "shipped" / "x.safetensors", runs / model / "model.safetensors")
    assert (runs / "shipped" / "x.card.json").read_text() == (runs / model / "card.json").read_text()
    assert sorted(p.name for p in (runs / "shipped").iterdir()) == ["x.card.json", "x.safetensors"]
    card = json.loads((runs / "shipped" / "x.card.json").read_text())
    assert card["steps"] == (4 if model == "prior" else 2) and f"EMA weights at step {card['steps']}" in out
    shutil.rmtree(runs / "shipped")


def test_tile_and_dtype_land_in_the_card_and_the_loader_uses_the_tile(runs, monkeypatch, capsys):
    from guidedinv.models import load_denoiser
    from guidedinv.tiling import Tiling

    monkeypatch.chdir(runs)
    code, out, err = cli(monkeypatch, capsys, "train", "export", "prior", "--out", "t.safetensors", "--tile", "8",
                         "--export-dtype", "bf16")
    assert code == 0, err
    card = json.loads(Path("t.card.json").read_text())
    run_card = json.loads((runs / "prior" / "card.json").read_text())
    assert card == {**run_card, "export_dtype": "bf16", "tile": 8}
    prior = load_denoiser("t.safetensors", device="cpu")
    assert (prior.inferred.train_crop, prior.inferred.tile) == (16, 8)
    assert prior.tiling == Tiling(8, 1)
    assert load_denoiser(runs / "prior" / "model.safetensors", device="cpu").tiling == Tiling(32, 4)  # the crop's 4/3
    with safe_open("t.safetensors", "pt") as f, safe_open(str(runs / "prior" / "model.safetensors"), "pt") as g:
        assert f.keys() == g.keys() and {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
        assert all(torch.equal(f.get_tensor(k), g.get_tensor(k).bfloat16()) for k in f.keys())


def _older(runs: Path, folder: str) -> Path:
    """The prior's checkpoint as an older version wrote it: no record of the data and machine."""
    state = torch.load(runs / "prior" / "checkpoint.pt", weights_only=True)
    del state["card"]
    (runs / folder).mkdir(exist_ok=True)
    shutil.copy(runs / "prior" / "log.jsonl", runs / folder / "log.jsonl")
    torch.save(state, runs / folder / "checkpoint.pt")
    return runs / folder


def test_an_older_checkpoint_is_exported_with_the_data_it_names(runs, monkeypatch, capsys):
    monkeypatch.chdir(runs)
    _older(runs, "old")
    code, out, err = cli(monkeypatch, capsys, "train", "export", "old", "--out", "old.safetensors", "--data", "data")
    assert code == 0, err
    _same_model(Path("old.safetensors"), runs / "prior" / "model.safetensors")
    # or without --data, from the card.json an earlier part of the run wrote, when it names the same data
    folder = _older(runs, "old-card")
    earlier = json.loads((runs / "two" / "card.json").read_text())
    (folder / "card.json").write_text(json.dumps({**earlier, "data_digest": "0" * 12}))
    code, out, err = cli(monkeypatch, capsys, "train", "export", "old-card", "--out", "old2.safetensors")
    _one_line_error(code, err, 2, "old-card/checkpoint.pt: written by an older guidedinv that does not record")
    (folder / "card.json").write_text(json.dumps(earlier))
    code, out, err = cli(monkeypatch, capsys, "train", "export", "old-card", "--out", "old2.safetensors")
    assert code == 0, err
    _same_model(Path("old2.safetensors"), runs / "prior" / "model.safetensors")


@pytest.mark.parametrize("args, needle", [
    (["nowhere", "--out", "x.safetensors"], "CHECKPOINT nowhere: no such file or folder"),
    (["data", "--out", "x.safetensors"], "data: no checkpoint.pt in this folder"),
    (["bad/garbage.pt", "--out", "x.safetensors"], "bad/garbage.pt: not a readable training checkpoint"),
    (["bad/foreign.pt", "--out", "x.safetensors"], "not a guidedinv training checkpoint (no valid 'step'"),
    (["bad/evil.pt", "--out", "x.safetensors"], "refused unread: it asks for Python objects"),
    (["prior", "--out", "prior/checkpoint.pt"], "--out prior/checkpoint.pt: the file name must end in .safetensors"),
    (["bad/ckpt.safetensors", "--out", "bad/ckpt.safetensors"], "--out bad/ckpt.safetensors is also CHECKPOINT"),
    (["prior", "--out", "prior/model.safetensors"], "is also the run's model.safetensors"),
    (["prior", "--out", "prior/checkpoint.safetensors"], "--out's temporary file prior/checkpoint.tmp is also the run's "
                                                         "checkpoint.tmp"),
    (["prior", "--out", "data/0.safetensors"], "--out's card data/0.card.json: is a folder"),
    (["prior", "--out", "x.safetensors", "--tile", "0"], "--tile 0: expected a whole number of pixels >= 1"),
    (["prior", "--out", "x.safetensors", "--tile", "6"], "--tile 6: must be a multiple of 4"),
    (["prior", "--out", "x.safetensors", "--export-dtype", "fp64"], "--export-dtype fp64: expected one of fp32, fp16, bf16"),
    (["old", "--out", "x.safetensors"], "old/checkpoint.pt: written by an older guidedinv that does not record"),
    (["old", "--out", "x.safetensors", "--data", "other"], "--data other: not the data the run trained on (2 files"),
    (["cond", "--out", "x.safetensors", "--data", "labelled", "--data", "data"], "trains on one labelled folder"),
])
def test_refusals_are_one_line_and_write_nothing(runs, monkeypatch, capsys, args, needle):
    monkeypatch.chdir(runs)
    bad = runs / "bad"
    if not bad.exists():
        bad.mkdir()
        (bad / "garbage.pt").write_bytes(os.urandom(300))
        torch.save({"model": {"w": torch.zeros(3)}}, bad / "foreign.pt")

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {bad / 'PWNED'}",))

        torch.save({"step": 1, "x": Evil()}, bad / "evil.pt")
        shutil.copy(runs / "prior" / "checkpoint.pt", bad / "ckpt.safetensors")
        _older(runs, "old")
        _images(runs / "other", n=2)
        (runs / "data" / "0.card.json").mkdir()  # where --out data/0.safetensors would put its card
    before = _files(runs)
    code, out, err = cli(monkeypatch, capsys, "train", "export", *args)
    _one_line_error(code, err, 2, needle)
    assert _files(runs) == before and not (bad / "PWNED").exists()


def test_help_has_an_example(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "train", "export", "--help")
    assert code == 0 and "Example: guidedinv train export runs/prior --out" in " ".join(out.split())
    assert "--tile" in out and "--export-dtype" in out and "--data" in out
