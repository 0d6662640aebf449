"""The network math: embedding order, qkv channel orders, GroupNorm precision, reduced precision,
any-size forward, and the learned variance reaching the ancestral step."""

from __future__ import annotations

import pytest
import torch

from guidedinv.denoiser import NetworkDenoiser
from guidedinv.models import ADMConfig, build_network
from guidedinv.models.adm_layers import AttentionBlock, GroupNorm32, timestep_embedding
from guidedinv.noise import NoiseSource
from guidedinv.rules import DDPM
from guidedinv.schedule import VPSchedule


def randomized(cfg: ADMConfig, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_network(cfg).eval()
    with torch.no_grad():
        for p in net.parameters():  # the zero-initialised layers would hide most of the network
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.05))
    return net


def test_timestep_embedding_is_cos_first_and_divides_by_half():
    e = timestep_embedding(torch.tensor([0.0, 1.0, 2.5]), 4)
    assert torch.equal(e[0], torch.tensor([1.0, 1.0, 0.0, 0.0]))
    f = torch.tensor([1.0, 10000**-0.5])  # exp(-ln(10000) i / half), half = 2
    torch.testing.assert_close(e[1], torch.cat([torch.cos(f), torch.sin(f)]))
    torch.testing.assert_close(e[2], torch.cat([torch.cos(2.5 * f), torch.sin(2.5 * f)]))
    odd = timestep_embedding(torch.tensor([3.0]), 5)
    assert odd.shape == (1, 5) and odd[0, -1] == 0


def _new_order_index(heads: int, ch: int) -> torch.Tensor:
    """For each new-order qkv channel [q|k|v][head][c], its legacy channel [head][q,k,v][c]."""
    part, head, c = torch.meshgrid(torch.arange(3), torch.arange(heads), torch.arange(ch), indexing="ij")
    return (head * 3 * ch + part * ch + c).reshape(-1)


def test_legacy_and_new_attention_orders_agree_after_permuting_qkv():
    torch.manual_seed(0)
    legacy, new = AttentionBlock(64, 4, "legacy"), AttentionBlock(64, 4, "new")
    with torch.no_grad():
        for p in legacy.parameters():
            p.normal_()
        new.load_state_dict(legacy.state_dict())
        idx = _new_order_index(4, 16)
        new.qkv.weight.copy_(legacy.qkv.weight[idx])
        new.qkv.bias.copy_(legacy.qkv.bias[idx])
        x = torch.randn(2, 64, 6, 5)
        torch.testing.assert_close(new(x), legacy(x))
        unpermuted = AttentionBlock(64, 4, "new")
        unpermuted.load_state_dict(legacy.state_dict())
        assert not torch.allclose(unpermuted(x), legacy(x), atol=1e-3)  # the order is not a detail


def test_whole_unet_orders_agree_after_permuting_qkv():
    base = ADMConfig(64, 1, (1, 2), (1, 2), head_channels=32, num_classes=3)
    legacy = randomized(base)
    new = build_network(ADMConfig(**{**base.to_dict(), "attention_order": "new"})).eval()
    state = legacy.state_dict()
    for key, value in list(state.items()):
        if key.endswith((".qkv.weight", ".qkv.bias")):
            heads = value.shape[0] // 3 // 32
            state[key] = value[_new_order_index(heads, 32)]
    new.load_state_dict(state)
    x, t, y = torch.randn(2, 3, 8, 12), torch.tensor([3.0, 700.0]), torch.tensor([0, 2])
    with torch.no_grad():
        torch.testing.assert_close(new(x, t, y), legacy(x, t, y), rtol=1e-4, atol=1e-4)
        new.load_state_dict(legacy.state_dict())
        assert not torch.allclose(new(x, t, y), legacy(x, t, y), atol=1e-3)


def test_group_norm_runs_in_float32_for_half_inputs():
    gn = GroupNorm32(64)
    with torch.no_grad():
        gn.weight.normal_(), gn.bias.normal_()
    x = (torch.randn(2, 64, 4, 4) * 300).half()
    expected = torch.nn.functional.group_norm(x.float(), 32, gn.weight, gn.bias, 1e-5).half()
    out = gn(x)
    assert out.dtype == torch.float16 and torch.equal(out, expected)


def test_forward_at_non_square_sizes_and_clear_size_errors():
    net = randomized(ADMConfig(32, 1, (1, 2, 2), (2, 4)))
    with torch.no_grad():
        for h, w in ((16, 24), (8, 40), (4, 4)):
            out = net(torch.randn(1, 3, h, w), torch.tensor([10.0]))
            assert out.shape == (1, 6, h, w) and torch.isfinite(out).all()
        with pytest.raises(ValueError, match="divisible by 4"):
            net(torch.randn(1, 3, 10, 12), torch.tensor([1.0]))
        with pytest.raises(ValueError, match="unconditional"):
            net(torch.randn(1, 3, 8, 8), torch.tensor([1.0]), torch.tensor([0]))


def test_class_conditional_network_needs_labels():
    net = randomized(ADMConfig(32, 1, (1, 2), (), num_classes=4))
    with torch.no_grad(), pytest.raises(ValueError, match="class-conditional"):
        net(torch.randn(1, 3, 8, 8), torch.tensor([1.0]))


def test_reduced_precision_converts_only_the_torso_convolutions():
    net = randomized(ADMConfig(32, 1, (1, 2), (2,), num_classes=3))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)
    x, t, y = torch.randn(2, 3, 8, 8), torch.tensor([5.0, 600.0]), torch.tensor([1, 2])
    with torch.no_grad():
        full = net(x, t, y)
        net.convert_to(torch.bfloat16)
        half = net(x, t, y)
    assert net.dtype == torch.bfloat16 and half.dtype == torch.float32
    assert net.input_blocks[1][0].in_layers[2].weight.dtype == torch.bfloat16
    assert net.output_blocks[0][1].qkv.weight.dtype == torch.bfloat16
    for fp32 in (
        net.time_embed[0].weight,
        net.label_emb.weight,
        net.input_blocks[1][0].emb_layers[1].weight,
        net.input_blocks[1][0].in_layers[0].weight,
        net.out[2].weight,
    ):
        assert fp32.dtype == torch.float32
    assert set(net.reduced_precision_keys()) == {k for k, v in net.state_dict().items() if v.dtype == torch.bfloat16}
    assert (half - full).abs().max() < 0.05 * full.abs().max()


def test_attention_pool_classifier_rejects_other_sizes():
    clf = randomized(ADMConfig(32, 1, (1, 2), (2,), kind="classifier", out_channels=5, head_channels=32, image_size=16))
    with torch.no_grad():
        assert clf(torch.randn(3, 3, 16, 16), torch.tensor([1.0, 2.0, 3.0])).shape == (3, 5)
        with pytest.raises(ValueError, match="8x8 features"):
            clf(torch.randn(1, 3, 32, 32), torch.tensor([1.0]))


class FakeNet(torch.nn.Module):
    """eps = 0.1 x and a constant learned-variance channel v."""

    def __init__(self, v: float) -> None:
        super().__init__()
        self.v = v

    def forward(self, x, t):
        return torch.cat([0.1 * x, torch.full_like(x, self.v)], dim=1)


@pytest.mark.parametrize("v, fixed", [(1.0, "large"), (-1.0, "small")])
def test_learned_variance_extremes_are_the_fixed_ddpm_variances(v, fixed):
    schedule = VPSchedule.linear()
    denoiser = NetworkDenoiser(FakeNet(v), schedule, "eps", learned_sigma=True)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    t = torch.full((2,), 500.0, dtype=torch.float64)
    pred = denoiser(x, t)
    assert pred.var_interp is not None and bool((pred.var_interp == v).all())
    a, a_next = schedule.alpha_bar(500), schedule.alpha_bar(480)
    learned = DDPM("learned").step(x, pred, a, a_next, NoiseSource.from_seeds([1, 2]), {})
    reference = DDPM(fixed).step(x, pred, a, a_next, NoiseSource.from_seeds([1, 2]), {})
    torch.testing.assert_close(learned, reference, rtol=1e-12, atol=1e-12)
    other = DDPM("small" if fixed == "large" else "large").step(x, pred, a, a_next, NoiseSource.from_seeds([1, 2]), {})
    assert not torch.allclose(learned, other)


def test_learned_variance_interpolates_in_log_space():
    """v = 0: log var = (log beta + log beta_tilde) / 2. At x = 0 the fake eps is 0, so x0 = 0, the
    posterior mean is 0 and the step is exactly std * z."""
    schedule = VPSchedule.linear()
    x = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    pred = NetworkDenoiser(FakeNet(0.0), schedule, "eps", learned_sigma=True)(x, torch.tensor([300.0]))
    a, a_next = schedule.alpha_bar(300), schedule.alpha_bar(299)
    beta = 1 - a / a_next
    beta_tilde = beta * (1 - a_next) / (1 - a)
    step = DDPM("learned").step(x, pred, a, a_next, NoiseSource.from_seeds([0]), {})
    z = NoiseSource.from_seeds([0]).randn_like(x)
    torch.testing.assert_close(step, (beta * beta_tilde) ** 0.25 * z, rtol=1e-12, atol=1e-12)
