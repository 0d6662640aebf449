"""``guidedinv ui`` without a browser: the server's API (bad uploads as one-line messages, the server
still answering, nothing left outside its folder), the page's defaults from the presets and the
method registry, results equal to the command line's, one job at a time from a queue, per-step
progress, and the labelled comparison picture. The browser tests are in tests/test_ui_browser.py."""
from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from guidedinv.app.methods import get_method, methods_for_kind
from guidedinv.app.request import load_preset
from guidedinv.ui.server import make_server, start_in_thread

SAMPLES = Path(__file__).resolve().parent.parent / "sample_images"
SMALL = SAMPLES / "coffee_x4.png"  # 80 x 60


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(name: str, content: bytes) -> dict:
    return {"name": name, "data": base64.b64encode(content).decode()}


def _box_mask(h: int = 60, w: int = 80) -> bytes:
    mask = np.zeros((h, w), np.uint8)
    mask[20:40, 30:50] = 255
    return _png(mask)


class Client:
    def __init__(self, server) -> None:
        self.server, self.url = server, server.url

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def post(self, payload: object, raw: bytes | None = None) -> tuple[int, dict]:
        data = raw if raw is not None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + "api/jobs", data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def wait(self, job: dict, timeout: float = 60) -> dict:
        end = time.time() + timeout
        while job["state"] in ("queued", "running"):
            assert time.time() < end, f"job still {job['state']} after {timeout} s"
            time.sleep(0.05)
            job = json.loads(self.get(f"/api/jobs/{job['id']}")[1])
        return job

    def image(self, path: str) -> np.ndarray:
        status, body = self.get(path)
        assert status == 200, body
        return np.asarray(Image.open(io.BytesIO(body)))


@pytest.fixture
def client(tmp_path):
    server = make_server(port=0, root=tmp_path / "ui", device="cpu")
    start_in_thread(server)
    yield Client(server)
    server.close()


def test_page_static_files_and_defaults_from_the_presets(client):
    status, page = client.get("/")
    assert status == 200 and b"/static/app.js" in page
    assert client.get("/static/app.js")[0] == 200 and client.get("/static/style.css")[0] == 200
    assert client.get("/static/../server.py")[0] == 404 and client.get("/static/nothing.js")[0] == 404
    config = json.loads(client.get("/api/config")[1])
    for task in ("inpaint", "superres", "deblur", "denoise", "edit"):
        preset, shown = load_preset(task), config["tasks"][task]
        assert shown["method"] == preset["method"]
        assert list(shown["methods"]) == list(methods_for_kind({"superres": "downsample", "deblur": "blur",
                                                                "denoise": "identity"}.get(task, task)))
        for name, m in shown["methods"].items():
            steps = preset.get("methods", {}).get(name, {}).get("steps", get_method(name).defaults().get("steps"))
            assert m == {"network": get_method(name).uses_network, "steps": steps}
    assert config["tasks"]["superres"]["operator"]["scale"] == load_preset("superres")["operator"]["scale"]
    assert config["tasks"]["edit"]["strength"] == get_method("sdedit").defaults()["strength"]


BAD = {  # name: (payload changes, what the one-line message must say)
    "text file": ({"image": _upload("notes.txt", b"hello, not an image")}, "notes.txt: not an image file that can be read"),
    "empty image": ({"image": _upload("empty.png", b"")}, "empty.png: file is empty"),
    "not base64": ({"image": {"name": "a.png", "data": "###"}}, "a.png: the upload is damaged"),
    "empty mask": ({"mask": _upload("painted-mask.png", _png(np.zeros((60, 80), np.uint8)))}, "painted-mask.png: mask is empty"),
    "full mask": ({"mask": _upload("painted-mask.png", _png(np.full((60, 80), 255, np.uint8)))}, "painted-mask.png: mask marks every"),
    "mask of another size": ({"mask": _upload("m.png", _box_mask(61, 80))}, "m.png: mask is 80x61 pixels but the image is 80x60"),
    "mask and spec": ({"options": {"mask_spec": "box"}}, "give either a mask"),
    "bad seed": ({"options": {"seed": "abc"}}, "--seed abc: expected a whole number"),
    "bad steps": ({"options": {"steps": "many"}}, "many"),
    "classical steps": ({"options": {"method": "biharmonic", "steps": "10"}}, "--steps 10: the classical method 'biharmonic'"),
    "unknown method": ({"options": {"method": "magic"}}, "magic"),
    "unknown task": ({"task": "paint"}, "unknown task 'paint'"),
    "samples of a deterministic method": ({"options": {"samples": "4"}}, "--samples 4: samples = 4: method pnp is deterministic"),
    "samples when editing": ({"task": "edit", "mask": None, "options": {"samples": "2"}}, "--samples 2: posterior samples are for"),
    "samples with trajectory": ({"options": {"method": "ddnm", "samples": "2"}, "trajectory": True}, "--trajectory follows one sample"),
    "no image": ({"image": None}, "choose an image"),
    "bad scale": ({"task": "superres", "mask": None, "options": {"scale": "0"}}, "--scale 0: operator.scale = 0"),
    "bad kernel": ({"task": "deblur", "mask": None, "options": {"kernel": "gaussian:-1"}}, "--kernel gaussian:-1"),
    "kernel text file": ({"task": "deblur", "mask": None, "kernel": _upload("k.npy", b"text")}, "k.npy"),
    "bad strength": ({"task": "edit", "mask": None, "options": {"strength": "2"}}, "--strength 2"),
    "edit scale without class": ({"task": "edit", "mask": None, "options": {"guidance_scale": "3"}}, "needs the class"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_the_server_keeps_running(client, case, tmp_path):
    changes, expected = BAD[case]
    payload = {"task": "inpaint", "image": _upload("coffee_x4.png", SMALL.read_bytes()), "mask": _upload("m.png", _box_mask()),
               "options": {}} | changes
    payload["options"] = {"steps": "logsnr4"} | payload["options"] if case != "classical steps" else payload["options"]
    status, answer = client.post(payload)
    assert status == 400, answer
    assert expected in answer["error"] and "\n" not in answer["error"], answer["error"]
    assert str(tmp_path) not in answer["error"]  # the server's folder is never shown
    assert list((tmp_path / "ui").iterdir()) == []  # the refused job's folder is gone
    assert client.get("/api/config")[0] == 200


def test_over_size_image_and_over_size_upload(client, monkeypatch):
    monkeypatch.setenv("GUIDEDINV_MAX_PIXELS", "1000")
    status, answer = client.post({"task": "denoise", "image": _upload("big.png", SMALL.read_bytes()), "options": {}})
    assert status == 400 and "big.png: image declares 80x60 pixels" in answer["error"] and "over the limit" in answer["error"]
    client.server.max_body = 1000
    status, answer = client.post(None, raw=b"x" * 5000)
    assert status == 413 and "over the page's limit" in answer["error"]
    assert client.post(None, raw=b"{not json")[0] == 400
    assert client.get("/api/jobs/nothing")[0] == 404 and client.get("/nowhere")[0] == 404


def test_a_request_that_would_not_fit_is_refused_before_the_model_loads(client, monkeypatch):
    import guidedinv.memory_estimate as estimate

    monkeypatch.setattr(estimate, "available_memory", lambda device=None: 1 << 20)
    status, answer = client.post({"task": "superres", "image": _upload("coffee_x4.png", SMALL.read_bytes()), "options": {}})
    assert status == 400 and "the result" in answer["error"] and "\n" not in answer["error"], answer
    assert client.server.jobs._prior is None  # nothing loaded


def test_a_job_equals_the_command_line_result_and_recipe(client, tmp_path, monkeypatch):
    """One implementation: the page's inpainting (classical method, no network) gives the command's
    pixels and recipe text."""
    mask = tmp_path / "m.png"
    mask.write_bytes(_box_mask())
    from typer.testing import CliRunner

    from guidedinv.cli import app

    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke(app, ["inpaint", str(SMALL), "m.png", "--method", "biharmonic", "-o", "cli.png", "-q"])
    assert run.exit_code == 0, run.output
    _, job = client.post({"task": "inpaint", "image": _upload("coffee_x4.png", SMALL.read_bytes()),
                          "mask": _upload("m.png", mask.read_bytes()), "options": {"method": "biharmonic"}})
    job = client.wait(job)
    assert job["state"] == "done", job
    assert np.array_equal(client.image(job["files"]["result"]), np.asarray(Image.open(tmp_path / "cli.png")))
    assert client.get(job["files"]["recipe"])[1] == (tmp_path / "cli.recipe.toml").read_bytes()
    used = client.image(job["files"]["mask"]) > 127  # the mask as used, to reproduce the result with the recipe
    assert np.array_equal(used, np.asarray(Image.open(mask)) > 127)
    download = urllib.request.urlopen(client.url + job["files"]["result"].lstrip("/") + "?download=1")
    assert "attachment" in download.headers["Content-Disposition"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli.png", "cli.recipe.toml", "m.png", "ui"]


def test_two_tabs_are_queued_not_mixed(tmp_path):
    """Two jobs submitted together: the second waits for the first (no overlap in time), and each
    result is its own input's restoration, equal to restore() on it alone."""
    from guidedinv.app import build_request, restore
    from guidedinv.io import read_image

    server = make_server(port=0, root=tmp_path / "ui", start_worker=False)
    start_in_thread(server)
    client = Client(server)
    try:
        inpaint = {"task": "inpaint", "image": _upload("coffee_x4.png", SMALL.read_bytes()), "mask": _upload("m.png", _box_mask()),
                   "options": {"method": "biharmonic"}}
        superres = {"task": "superres", "image": _upload("small.png", SMALL.read_bytes()), "options": {"method": "bicubic", "scale": "2"}}
        first, second = client.post(inpaint)[1], client.post(superres)[1]
        assert (first["state"], first["position"], second["state"], second["position"]) == ("queued", 0, "queued", 1)
        server.max_waiting = 2
        status, answer = client.post(inpaint)  # a third waiting job: refused, memory stays bounded
        assert status == 503 and "2 jobs are already waiting" in answer["error"]
        server.jobs.start()
        first, second = client.wait(first), client.wait(second)
        a, b = server.jobs.get(first["id"]), server.jobs.get(second["id"])
        assert a.finished <= b.started
        image = read_image(SMALL).image[None]
        mask = torch.from_numpy(np.asarray(Image.open(io.BytesIO(_box_mask()))) > 127)
        expected_a = restore(None, build_request("inpaint", sets=['method="biharmonic"']), image, mask=mask)[0]
        expected_b = restore(None, build_request("superres", sets=['method="bicubic"', "operator.scale=2"]), image)[0]
        for job, expected in ((first, expected_a), (second, expected_b)):
            got = client.image(job["files"]["result"]).astype(np.float64) / 255
            assert got.shape == (expected.shape[1], expected.shape[2], 3)
            assert np.abs(got - expected.permute(1, 2, 0).numpy()).max() <= 0.5 / 255 + 1e-6
    finally:
        server.close()
    assert not (tmp_path / "ui").exists()


def test_network_job_reports_each_step_and_keeps_the_outside(client):
    """Inpainting with the embedded prior (logsnr4, 80 x 60 px): every step is reported, the known
    pixels come back exactly, the trajectory has one frame a step, the comparison is labelled."""
    seen = []
    _, job = client.post({"task": "inpaint", "image": _upload("coffee_x4.png", SMALL.read_bytes()), "mask": _upload("m.png", _box_mask()),
                          "options": {"steps": "logsnr4"}, "trajectory": True})
    while job["state"] in ("queued", "running"):
        seen.append((job["step"], job["total"]))
        time.sleep(0.02)
        job = json.loads(client.get(f"/api/jobs/{job['id']}")[1])
    assert job["state"] == "done", job
    assert job["steps"] == "logsnr4" and (job["step"], job["total"]) == (4, 4)
    assert {s for s, t in seen if t} <= {1, 2, 3, 4}
    result, original = client.image(job["files"]["result"]), np.asarray(Image.open(SMALL))
    inside = np.zeros((60, 80), bool)
    inside[20:40, 30:50] = True
    assert np.array_equal(result[~inside], original[~inside])
    assert np.abs(result[inside].astype(int) - original[inside]).mean() > 5
    gif = Image.open(io.BytesIO(client.get(job["files"]["trajectory"])[1]))
    assert gif.n_frames == 4
    compare = client.image(job["files"]["compare"])
    assert compare.shape[0] > 60 and compare.shape[1] == 80 + 4 + 80
    assert np.array_equal(compare[-60:, :80, :3], original)  # the input panel under its label band
    assert "uncertainty" not in job["files"]  # one sample: no spread


def test_labelled_strip_bicubic_input_and_labels():
    from guidedinv.app.images import labelled_strip

    small = torch.rand(3, 15, 20)
    big = torch.rand(3, 60, 80)
    strip = labelled_strip([("input", small), ("pnp, logsnr20 steps", big)], upscale_small=True)
    band = strip.shape[-2] - 60
    assert band > 0 and strip.shape[-1] == 80 + 4 + 80
    up = F.interpolate(small[None], size=(60, 80), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    assert torch.allclose(strip[:, band:, :80], up) and torch.equal(strip[:, band:, 84:], big)
    assert (strip[:, :band, :80] < 0.5).any() and (strip[:, :band, 84:] < 0.5).any()  # text in each label


def test_command_start_line_loopback_and_bad_options(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    exe = [sys.executable, "-m", "guidedinv"]
    for args, expected in ((["--port", "70000"], "--port 70000"), (["--device", "tpu"], "--device tpu")):
        out = subprocess.run([*exe, "ui", *args], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and expected in out.stderr, out.stderr
    proc = subprocess.Popen([*exe, "ui", "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line and "loopback only" in line, line
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/config", timeout=30) as r:
            assert json.load(r)["model"] == "default"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    folder = Path(line.split("its files go to ")[1].split(",")[0])
    assert folder.name.startswith("guidedinv-ui-") and not folder.exists()
    assert list(tmp_path.iterdir()) == []


def test_command_compare_picture_is_labelled_and_upscales_bicubic(tmp_path, monkeypatch):
    """``guidedinv superres --compare``: input | measurement | result under a label band; the small
    input is shown bicubic-upscaled to the result's size (like with like), the result as written."""
    from typer.testing import CliRunner

    from guidedinv.cli import app
    from guidedinv.io import read_image

    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke(app, ["superres", str(SMALL), "--scale", "2", "--method", "bicubic", "-o", "sr.png",
                                   "--compare", "cmp.png", "-q"])
    assert run.exit_code == 0, run.output
    compare = read_image(tmp_path / "cmp.png").image
    result = read_image(tmp_path / "sr.png").image
    band = compare.shape[-2] - 120
    assert band > 0 and compare.shape[-1] == 3 * 160 + 2 * 4
    small = read_image(SMALL).image
    up = F.interpolate(small[None], size=(120, 160), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    assert (compare[:, band:, :160] - up).abs().max() <= 0.5 / 255 + 1e-6
    assert (compare[:, band:, -160:] - result).abs().max() <= 0.5 / 255 + 1e-6
    assert (compare[:, :band, -160:] < 0.5).any()  # the result's label is written


def test_edit_inside_a_painted_mask_keeps_the_rest(client):
    """The edit tab: SDEdit (strength 0.6, logsnr3) inside the painted mask only; outside the input
    comes back bit for bit; the mask travels with the result."""
    _, job = client.post({"task": "edit", "image": _upload("coffee_x4.png", SMALL.read_bytes()),
                          "mask": _upload("painted-mask.png", _box_mask()), "options": {"strength": "0.6", "steps": "logsnr3"}})
    job = client.wait(job)
    assert job["state"] == "done", job
    result, original = client.image(job["files"]["result"]), np.asarray(Image.open(SMALL))
    inside = np.zeros((60, 80), bool)
    inside[20:40, 30:50] = True
    assert np.array_equal(result[~inside], original[~inside])
    assert np.abs(result[inside].astype(int) - original[inside]).mean() > 2
    assert np.array_equal(client.image(job["files"]["mask"]) > 127, inside)
    recipe = client.get(job["files"]["recipe"])[1].decode()
    assert "strength = 0.6" in recipe and 'mask = "painted-mask.png"' in recipe  # the mask as the download names it
    download = urllib.request.urlopen(client.url + job["files"]["mask"].lstrip("/") + "?download=1")
    assert download.headers["Content-Disposition"] == "attachment; filename*=UTF-8''painted-mask.png"


def test_uploaded_kernel_runs_as_the_command_and_the_recipe_names_the_file(client, tmp_path, monkeypatch):
    """Deblurring with an uploaded .npy kernel (Wiener, no network) equals 'guidedinv deblur --kernel
    k.npy'; the recipe names the kernel 'k.npy', never the server's temporary folder."""
    from typer.testing import CliRunner

    from guidedinv.cli import app

    kernel = np.outer(np.hanning(9)[1:-1], np.hanning(9)[1:-1])
    buffer = io.BytesIO()
    np.save(buffer, kernel)
    (tmp_path / "k.npy").write_bytes(buffer.getvalue())
    monkeypatch.chdir(tmp_path)
    run = CliRunner().invoke(app, ["deblur", str(SMALL), "--kernel", "k.npy", "--method", "wiener", "-o", "cli.png", "-q"])
    assert run.exit_code == 0, run.output
    _, job = client.post({"task": "deblur", "image": _upload("coffee_x4.png", SMALL.read_bytes()),
                          "kernel": _upload("k.npy", buffer.getvalue()), "options": {"method": "wiener"}})
    job = client.wait(job)
    assert job["state"] == "done", job
    assert np.array_equal(client.image(job["files"]["result"]), np.asarray(Image.open(tmp_path / "cli.png")))
    recipe = client.get(job["files"]["recipe"])[1].decode()
    assert 'kernel = "k.npy"' in recipe and str(client.server.root) not in recipe
    assert recipe == (tmp_path / "cli.recipe.toml").read_text()


def test_posterior_samples_give_their_mean_and_an_uncertainty_map(client):
    """Inpainting with DDNM and --samples 2 (logsnr3): the result is the samples' mean, the known pixels
    exactly the input (no spread there), and the page gets the command's colour-mapped std picture."""
    _, job = client.post({"task": "inpaint", "image": _upload("coffee_x4.png", SMALL.read_bytes()), "mask": _upload("m.png", _box_mask()),
                          "options": {"method": "ddnm", "steps": "logsnr3", "samples": "2"}})
    job = client.wait(job)
    assert job["state"] == "done", job
    assert job["samples"] == 2 and (job["step"], job["total"]) == (3, 3)  # both samples drawn together, one group
    result, original = client.image(job["files"]["result"]), np.asarray(Image.open(SMALL))
    inside = np.zeros((60, 80), bool)
    inside[20:40, 30:50] = True
    assert np.abs(result[~inside].astype(int) - original[~inside]).max() <= 1
    spread = client.image(job["files"]["uncertainty"])
    assert spread.shape[0] >= 60 and spread.shape[1] > 80  # the map and its scale bar
    zero = np.array([68, 1, 84])  # the colour map's 0: the known pixels do not spread
    assert (spread[:60, :80, :3][~inside] == zero).all() and (spread[:60, :80, :3][inside] != zero).any(-1).mean() > 0.5
    assert "samples = 2" in client.get(job["files"]["recipe"])[1].decode()


def test_the_server_starts_and_serves_without_importing_torch(tmp_path):
    """Start-up stays light: the page and its defaults come from the presets and the method registry;
    torch loads with the first form."""
    probe = ("import sys, urllib.request\n"
             "from guidedinv.ui.server import make_server, start_in_thread\n"
             f"server = make_server(port=0, root={str(tmp_path / 'ui')!r})\n"
             "start_in_thread(server)\n"
             "for path in ('', 'api/config', 'static/app.js'):\n"
             "    urllib.request.urlopen(server.url + path, timeout=30).read()\n"
             "server.close()\n"
             "print('torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "False", (out.stdout, out.stderr[-2000:])
