"""guidedinv/memory.py: the budget of a network call (option, environment, default), the live-tensor
count that measures what a call costs, and the allocator setting."""
from __future__ import annotations

import os
import platform

import pytest
import torch

from guidedinv import memory
from guidedinv.errors import InputError
from guidedinv.memory import LiveBytes, call_bytes, memory_budget, parse_memory, set_memory_budget


@pytest.mark.parametrize("text,expected", [("512M", 512 * 2**20), ("2G", 2 * 2**30), ("1.5GB", 3 * 2**29), ("2GiB", 2 * 2**30),
                                           ("1048576", 2**20), (" 64 mb ", 64 * 2**20), ("1T", 2**40), (2**21, 2**21)])
def test_sizes_parse_in_powers_of_1024(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "2X", "-1G", "1e9", "G", "100", "0.5K", "nan"])
def test_bad_sizes_are_one_line_errors_naming_the_option(text):
    with pytest.raises(InputError, match="--memory") as info:
        parse_memory(text)
    assert "\n" not in str(info.value)


def test_the_budget_comes_from_the_call_then_the_environment_then_the_default(monkeypatch):
    monkeypatch.delenv(memory.ENV_BUDGET, raising=False)
    default = memory_budget()
    assert memory.DEFAULT_FLOOR <= default <= memory.DEFAULT_CAP
    free = memory.available_memory()
    if free is not None and free * memory.DEFAULT_FRACTION >= memory.DEFAULT_FLOOR:
        assert default <= free * memory.DEFAULT_FRACTION * 1.5  # a quarter of what was free at first use
    monkeypatch.setenv(memory.ENV_BUDGET, "300M")
    assert memory_budget() == 300 * 2**20
    try:
        set_memory_budget("1G")
        assert memory_budget() == 2**30
        set_memory_budget(5 * 2**20)
        assert memory_budget() == 5 * 2**20
        with pytest.raises(InputError, match="1 MiB"):
            set_memory_budget(10)
    finally:
        set_memory_budget(None)
    assert memory_budget() == 300 * 2**20
    monkeypatch.setenv(memory.ENV_BUDGET, "lots")
    with pytest.raises(InputError, match="GUIDEDINV_MEMORY 'lots'"):
        memory_budget()


def test_live_bytes_counts_what_is_held_at_once_and_views_share():
    x = torch.zeros(1000, dtype=torch.float64)  # made outside: not counted, nor are its views
    with LiveBytes() as meter:
        a = x * 2           # 8000 B
        b = a[:500]         # a view: nothing new
        c = a + 1           # 16000 held
        del a, b, c
        d = x.view(10, 100).sum(0)  # 800 B
        e = x[:10]
    assert meter.peak == 16000 and meter.current == 800
    del d, e


def test_a_network_calls_cost_is_linear_in_its_batch_and_grows_with_gradients():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.GroupNorm(4, 16), torch.nn.SiLU(),
                              torch.nn.Conv2d(16, 3, 3, padding=1))

    def fn(x, t):
        return net(x) * t.view(-1, 1, 1, 1)

    one = call_bytes(fn, torch.randn(1, 3, 32, 32), (torch.ones(1),), False)
    four = call_bytes(fn, torch.randn(4, 3, 32, 32), (torch.ones(4),), False)
    assert 16 * 32 * 32 * 4 * 2 <= one  # at least two 16-channel activations at once
    assert abs(four - 4 * one) <= 0.02 * four
    assert call_bytes(fn, torch.randn(1, 3, 32, 32), (torch.ones(1),), True) > 1.5 * one  # kept for backward


def test_the_allocator_setting_can_be_switched_off(monkeypatch):
    monkeypatch.setenv(memory.ENV_MALLOPT, "0")
    assert memory.tune_allocator() is False


_FAULTS = """
import resource, sys, torch
from guidedinv import memory
tuned = memory.tune_allocator(200 * 2**20) if sys.argv[1] == "tuned" else None
size = 48 * 2**20
torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)  # a call's activation
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
torch.empty(size, dtype=torch.uint8).fill_(1)  # the next call's
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, size // resource.getpagesize())
"""


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_the_tuned_allocator_keeps_a_freed_activation_for_the_next_call():
    """glibc as it comes maps every block over 32 MB fresh and unmaps it on free: each call page-faults
    its activations in again. Tuned for activations of up to 200 MB, a 48 MB block reuses the pages of
    a freed 64 MB one. (A fresh process each: the test's own heap is not the point.)"""
    import subprocess
    import sys

    runs = {}
    for setting in ("as-is", "tuned"):
        done = subprocess.run([sys.executable, "-c", _FAULTS, setting], capture_output=True, text=True, check=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        tuned, faults, pages = done.stdout.split()
        runs[setting] = int(faults)
        assert tuned == ("True" if setting == "tuned" else "None")
    assert runs["as-is"] > int(pages) * 0.9 and runs["tuned"] < int(pages) // 4
