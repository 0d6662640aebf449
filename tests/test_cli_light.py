"""`guidedinv --version` and `--help` answer without importing torch (seconds saved on every call).

Each check runs in a fresh interpreter: this test process has long imported torch. The package
itself is lazy (PEP 562): `import guidedinv` imports no torch, its public names load on first use.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

# builds the typer app, runs it on ARGS, then reports whether torch was imported on the last line
PROBE = """
import sys
from guidedinv.cli import app
try:
    app(sys.argv[1:], prog_name="guidedinv")
    code = 0
except SystemExit as exc:
    code = exc.code or 0
print("\\ntorch imported:", "torch" in sys.modules)
sys.exit(code)
"""


def _probe(*args: str) -> tuple[int, str, bool]:
    out = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    last = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
    assert last.startswith("torch imported:"), f"no report; stdout={out.stdout[-2000:]!r} stderr={out.stderr[-2000:]!r}"
    return out.returncode, out.stdout, last.endswith("True")


def _heavy_importer() -> str:
    """The guidedinv import chain that first pulled torch in, for the failure message."""
    script = """
import sys, traceback
class Hook:
    def find_spec(self, name, path, target=None):
        if name == "torch":
            print(" <- ".join(f"{f.filename}:{f.lineno}" for f in reversed(traceback.extract_stack()) if "guidedinv" in f.filename))
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, Hook())
from guidedinv.cli import app
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    return out.stdout.strip() or out.stderr.strip()[-2000:]


@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["--help"],
        ["models", "--help"],
        ["train", "--help"],
        ["train", "prior", "--help"],
        ["train", "toy", "--help"],
        ["bench", "--help"],
        ["generate", "--help"],
        ["demo", "--help"],
        ["superres", "--help"],
        ["batch", "--help"],
        ["eval", "--help"],
    ],
    ids=" ".join,
)
def test_cli_answers_without_torch(args):
    code, stdout, torch_imported = _probe(*args)
    assert code == 0, stdout[-2000:]
    assert "guidedinv" in stdout or "Usage" in stdout
    assert not torch_imported, f"`guidedinv {' '.join(args)}` imported torch via: {_heavy_importer()}"


def test_version_is_the_package_version():
    import guidedinv

    code, stdout, _ = _probe("--version")
    assert code == 0 and stdout.strip().splitlines()[0] == f"guidedinv {guidedinv.__version__}"


def test_package_import_is_lazy_and_complete():
    script = """
import sys
import guidedinv
assert "torch" not in sys.modules, "import guidedinv imported torch"
assert set(guidedinv.__all__) <= set(dir(guidedinv))
from guidedinv import NoiseSource
import guidedinv.noise, guidedinv.sampler
assert NoiseSource is guidedinv.noise.NoiseSource and guidedinv.sample is guidedinv.sampler.sample
for name in guidedinv.__all__:
    getattr(guidedinv, name)
try:
    guidedinv.no_such_name
except AttributeError:
    pass
else:
    raise AssertionError("unknown attribute did not raise AttributeError")
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_lazy_table_all_and_type_checking_imports_agree():
    """A public name is added in three places: _LAZY (runtime), __all__ and the TYPE_CHECKING imports (tools)."""
    import ast

    import guidedinv

    tree = ast.parse(open(guidedinv.__file__, encoding="utf-8").read())
    static = {}
    for node in tree.body:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom) and imp.level == 1, ast.dump(imp)
                static.update({alias.name: imp.module for alias in imp.names})
    assert static == guidedinv._LAZY
    assert set(guidedinv.__all__) == {"__version__", *guidedinv._LAZY}
