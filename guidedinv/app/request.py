"""A request, parsed once: a preset (TOML, package data, or the user's ``--task`` file) plus ``--set``
overrides plus command-line options become one typed, validated :class:`Request` before any model
loads or any file is written. Every error names what the user typed (the flag, the ``--set`` item or
the key of their file) and what would be accepted.

The recipe (a nested dict, what TOML holds) stays the serialised form: :attr:`Request.recipe` is the
resolved recipe written beside every output; ``--task THAT.recipe.toml`` reproduces the result.

Keys of a recipe (``guidedinv/app/presets/README.md`` explains each; method settings are the
registry's, :mod:`guidedinv.app.methods`)::

    task, model, tile, method, seed, samples (posterior samples averaged per image; 1: one sample)
    [operator]   kind + inpaint: mask | downsample: scale, mode | blur: kernel, size, boundary
                 (its keys per kind and their checks: :mod:`guidedinv.app.operator_spec`)
    [noise]      sigma_y
    [methods.NAME] the settings of method NAME (defaults: the method's own)
    [guidance]   optional extra term: class, classifier, scale (class guidance beside the measurement)
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .methods import METHODS, get_method, methods_for_kind
from .methods.base import Setting
from .noise_range import in_range, prior_section_first, with_prior_section
from .operator_spec import KIND_OF_TASK, OperatorSpec, check_operator, kernel_path, operator_keys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TASKS", "KIND_OF_TASK", "OperatorSpec", "GuidanceSpec", "Request", "preset_dir", "load_preset", "MAX_SAMPLES",
           "apply_overrides", "parse_request", "build_request", "parse_value", "SEED_LIMIT", "check_samples",
           "kernel_path"]  # KIND_OF_TASK, OperatorSpec, kernel_path: .operator_spec's, re-exported

TASKS = ("inpaint", "superres", "deblur", "denoise", "edit")
SEED_LIMIT = 2**63
TOP_KEYS = ("task", "model", "model_flags", "tile", "method", "seed", "samples", "operator", "noise", "methods", "guidance", "batch")
TOP_KEYS += ("pnp_prior",)  # the settings a preset gives a prior of limited noise range (noise_range.py)
MAX_SAMPLES = 1000  # posterior samples per image: they run one group after another, so only time grows
DEVICES = "auto, cpu, cuda, cuda:N or mps"
DTYPES = ("fp32", "fp16", "bf16")

_GUIDANCE_KEYS = (
    Setting("class", "int", None, "class label to guide towards", low=0, high=1_000_000),
    Setting("classifier", "str", None, "noisy-image classifier checkpoint (else classifier-free guidance)"),
    Setting("scale", "float", 1.0, "guidance scale (classifier s; classifier-free w)", low=0.0, high=1e4),
)


@dataclass(frozen=True)
class GuidanceSpec:
    """An extra class-guidance term: classifier guidance with ``classifier``, else classifier-free."""

    label: int
    classifier: str | None
    scale: float


@dataclass(frozen=True)
class Request:
    """One validated request. ``settings`` are the chosen method's, defaults filled in."""

    task: str
    model: str
    model_flags: str
    tile: str | int
    method: str
    seed: int
    operator: OperatorSpec
    sigma_y: float
    settings: Mapping[str, Any]
    guidance: GuidanceSpec | None
    recipe: dict[str, Any] = field(repr=False, compare=False)
    samples: int = 1  # posterior samples per image (> 1: their mean, and their spread, guidedinv.app.posterior)

    @property
    def steps(self) -> str | None:
        """The method's grid ("logsnr20", ...); None for classical methods."""
        return self.settings.get("steps")

    @property
    def uses_network(self) -> bool:
        return get_method(self.method).uses_network

    def with_changes(self, assignments: Sequence[str], where: str = "--set") -> Request:
        """A new request with ``key=value`` assignments applied and everything re-checked."""
        return parse_request(apply_overrides(self.recipe, assignments, where), where)

    def with_seed(self, seed: int) -> Request:
        recipe = copy.deepcopy(self.recipe)
        recipe["seed"] = int(seed)
        return parse_request(recipe, "recipe")


# -- presets ------------------------------------------------------------------------------------
def preset_dir() -> Path:
    """Where the shipped presets are: package data (``guidedinv/app/presets``)."""
    return Path(__file__).resolve().parent / "presets"


def load_preset(name_or_path: str | Path) -> dict[str, Any]:
    """A shipped task's preset by name ('inpaint', ...) or any recipe TOML by path (not yet checked:
    :func:`parse_request` does that)."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        if str(name_or_path) not in TASKS:
            raise InputError(f"unknown task {str(name_or_path)!r}; choose from {', '.join(TASKS)} or give a .toml file")
        path = preset_dir() / f"{name_or_path}.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"recipe {path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"recipe {path}: is a folder, not a TOML file") from None
    except OSError as exc:
        raise InputError(f"recipe {path}: cannot read it ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InputError(f"recipe {path}: not UTF-8 text") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"recipe {path}: not valid TOML ({exc})") from None


def parse_value(text: str) -> Any:
    """A --set value: TOML syntax when it parses (numbers, booleans, quoted strings), else a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _known_keys(recipe: Mapping[str, Any], parts: list[str]) -> list[str] | None:
    """The keys a recipe may hold at ``parts`` (a table path), None where any key would do."""
    if not parts:
        return list(TOP_KEYS)
    if parts == ["operator"]:
        return operator_keys(KIND_OF_TASK.get(str(recipe.get("task")), ""))
    if parts == ["noise"]:
        return ["sigma_y"]
    if parts == ["methods"]:
        return list(METHODS)
    if len(parts) == 2 and parts[0] == "methods" and parts[1] in METHODS:
        return [s.name for s in METHODS[parts[1]].settings]
    if parts == ["guidance"]:
        return [s.name for s in _GUIDANCE_KEYS]
    return None if parts == ["batch"] or parts[:1] == ["pnp_prior"] else []  # pnp_prior: guidedinv.app.noise_range


def apply_overrides(recipe: Mapping[str, Any], assignments: Sequence[str], where: str = "--set") -> dict[str, Any]:
    """A copy of ``recipe`` with ``key.sub=value`` assignments applied. Keys must be ones a recipe may
    hold (a typo fails here, naming the keys accepted there); values are checked by :func:`parse_request`."""
    out = copy.deepcopy(dict(recipe))
    for item in assignments:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"{where} {item!r}: expected KEY=VALUE, e.g. methods.pnp.steps=\"logsnr20\"")
        parts = key.split(".")
        source = f"{where} {item}" if where == "--set" else where  # a flag names itself, a --set item its text
        node: dict[str, Any] = out
        for depth, part in enumerate(parts):
            known = _known_keys(out, parts[:depth])
            if known is not None and part not in known:
                table = ".".join(parts[:depth]) or "the recipe"
                raise InputError(f"{source}: {table} has no key {part!r} (accepted: {', '.join(known) or 'none'})")
            if depth == len(parts) - 1:
                break
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise InputError(f"{source}: {'.'.join(parts[: depth + 1])} is a value, not a table")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise InputError(f"{source}: {key} is a table; set one of its keys ({key}.KEY=VALUE)")
        node[parts[-1]] = parse_value(raw.strip())
    return out


# -- checking -------------------------------------------------------------------------------------
def _table(recipe: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = recipe.get(key, {})
    if not isinstance(value, dict):
        raise InputError(f"{key} = {value!r}: expected a table ([{key}] with its keys)")
    return value


def _check_keys(table: Mapping[str, Any], known: Sequence[str], where: str) -> None:
    for key in table:
        if key not in known:
            raise InputError(f"{where}.{key}: no such key (accepted: {', '.join(known) or 'none'})")


def _check_guidance(recipe: Mapping[str, Any]) -> GuidanceSpec | None:
    table = _table(recipe, "guidance")
    if not table:
        return None
    _check_keys(table, [s.name for s in _GUIDANCE_KEYS], "guidance")
    values = {s.name: s.check(table[s.name], f"guidance.{s.name}") if s.name in table else s.default for s in _GUIDANCE_KEYS}
    if values["class"] is None:
        raise InputError("guidance: a class to guide towards is missing (guidance.class, --class C)")
    if values["classifier"] is not None and not Path(values["classifier"]).is_file() and "/" in values["classifier"]:
        raise InputError(f"guidance.classifier = {values['classifier']!r}: no such file")
    return GuidanceSpec(values["class"], values["classifier"], values["scale"])


def _check_scalar(recipe: Mapping[str, Any], key: str, spec: Setting) -> Any:
    return spec.check(recipe.get(key, spec.default), key)


def check_tile(value: Any, where: str = "tile") -> str | int:
    """'auto' or a whole number of pixels >= 0 (0: the whole image in one network call)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    if isinstance(value, str) and (value.strip().isascii() and value.strip().isdigit()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{where} {value!r}: expected 'auto' or a whole number of pixels (0 = no tiling)")
    return value


def parse_request(recipe: Mapping[str, Any], where: str = "recipe") -> Request:
    """Check a whole recipe and return its :class:`Request`; an InputError prefixed by ``where``
    (e.g. "--task my.toml") otherwise."""
    try:  # a prior with a limited noise range takes the recipe's [pnp_prior] settings
        return _parse(with_prior_section(recipe))
    except InputError as exc:
        raise InputError(f"{where}: {exc}" if where else str(exc)) from None


def _parse(recipe: Mapping[str, Any]) -> Request:
    if not isinstance(recipe, Mapping):
        raise InputError("expected a table of keys")
    for key in recipe:
        if key not in TOP_KEYS:
            raise InputError(f"unknown key {key!r} (accepted: {', '.join(TOP_KEYS)})")
    task = recipe.get("task")
    if task not in TASKS:
        raise InputError(f"task = {task!r}: expected one of {', '.join(TASKS)}")
    model = recipe.get("model", "default")
    if not isinstance(model, str) or not model.strip():
        raise InputError(f"model = {model!r}: expected 'default', a registry name or a checkpoint file")
    model_flags = recipe.get("model_flags", "")
    if not isinstance(model_flags, str):
        raise InputError(f"model_flags = {model_flags!r}: expected text such as \"num_heads=4 use_new_attention_order=true\"")
    if model_flags.strip():
        from ..models.flags import parse_model_flags  # guided-diffusion's hidden flags, checked before any load

        parse_model_flags(model_flags, option="model_flags")
    tile = check_tile(recipe.get("tile", "auto"), "tile =")
    seed = _check_scalar(recipe, "seed", Setting("seed", "int", 0, "", low=0, high=SEED_LIMIT - 1))
    operator_table = _table(recipe, "operator")
    _check_keys(operator_table, operator_keys(KIND_OF_TASK[task]), "operator")
    operator = check_operator(operator_table, task)
    noise = _table(recipe, "noise")
    _check_keys(noise, ["sigma_y"], "noise")
    sigma_y = Setting("sigma_y", "float", 0.0, "", low=0.0, high=1.0).check(noise.get("sigma_y", 0.0), "noise.sigma_y")
    method_name = recipe.get("method")
    if not isinstance(method_name, str) or method_name not in METHODS:
        raise InputError(f"method = {method_name!r}: unknown method; choose from {', '.join(methods_for_kind(operator.kind))}")
    method = get_method(method_name)
    method.check_kind(operator.kind)
    method.check_operator(operator)
    tables = _table(recipe, "methods")
    checked: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():  # every table, not just the chosen one: a typo elsewhere is still a typo
        if name not in METHODS:
            raise InputError(f"methods.{name}: no such method (known: {', '.join(METHODS)})")
        if not isinstance(table, dict):
            raise InputError(f"methods.{name} = {table!r}: expected a table of settings")
        checked[name] = METHODS[name].check_settings(table, f"methods.{name}")
    settings = checked.get(method_name) or method.check_settings({}, f"methods.{method_name}")
    method.check_request(settings, sigma_y, f"methods.{method_name}")
    if method.uses_network:
        method.check_warm_start(settings, operator.kind, f"methods.{method_name}")  # type: ignore[attr-defined]
    samples = check_samples(recipe.get("samples", 1), method_name, settings, operator.kind)
    guidance = _check_guidance(recipe)
    if guidance is not None and not method.uses_network:
        raise InputError(f"guidance: class guidance needs a guided method, not the classical {method_name!r}")
    resolved = {k: copy.deepcopy(v) for k, v in recipe.items() if k not in ("methods", "samples")}
    resolved.update({"task": task, "model": model, "tile": tile, "seed": seed, "method": method_name})
    resolved.update({"samples": samples} if samples > 1 else {})  # a recipe of one sample reads as before
    resolved["operator"] = {"kind": operator.kind, **{k: v for k, v in vars(operator).items() if k != "kind" and v is not None}}
    resolved["noise"] = {"sigma_y": sigma_y}
    resolved["methods"] = {method_name: dict(settings)}
    if model_flags.strip():
        resolved["model_flags"] = model_flags
    return Request(task, model, model_flags, tile, method_name, seed, operator, sigma_y, settings, guidance, resolved, samples)


def check_samples(value: Any, method: str, settings: Mapping[str, Any], kind: str) -> int:
    """Posterior samples per image, 1..MAX_SAMPLES; > 1 only for a method that samples (Method.is_stochastic)."""
    n = Setting("samples", "int", 1, "", low=1, high=MAX_SAMPLES).check(value, "samples")
    if n > 1 and not get_method(method).is_stochastic(settings):
        usable = ", ".join(m for m in methods_for_kind(kind) if get_method(m).is_stochastic(get_method(m).defaults()))
        raise InputError(f"samples = {n}: method {method} is deterministic (no posterior spread); use a sampling method: {usable}")
    return n


def build_request(task: str | None, task_file: str | Path | None = None, options: Sequence[tuple[str, str]] = (),
                  sets: Sequence[str] = ()) -> Request:
    """The request of a command: ``task``'s preset (or ``task_file``; then ``task`` None takes the
    file's), then ``options`` (pairs of the flag as typed and the assignment it stands for, e.g.
    ("--steps logsnr20", 'methods.pnp.steps="logsnr20"')), then the ``--set`` items. Each layer is
    checked as it is applied, so an error names its source."""
    where = f"--task {task_file}" if task_file is not None else f"preset {task}"
    recipe = load_preset(task_file if task_file is not None else str(task))
    request = parse_request(recipe, where)
    if task is not None and request.task != task:
        raise InputError(f"{where} is a {request.task!r} recipe, not {task!r}")
    recipe = prior_section_first(copy.deepcopy(dict(recipe)), [*(a for _, a in options), *sets])
    for flag, assignment in options:
        recipe = apply_overrides(recipe, [assignment], flag)
        request = parse_request(recipe, flag)
    for item in sets:
        recipe = apply_overrides(recipe, [item], "--set")
        request = parse_request(recipe, f"--set {item}")
    return in_range(request)  # the final request starts inside its prior's noise range (noise_range.py)
