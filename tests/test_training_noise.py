"""Noise levels and loss weighting of prior training, and fine-tuning from exported weights: the
sampled sigmas follow their distribution, the EDM weight is Karras et al.'s lambda on the x0 error,
the options off give exactly the plain loss, and a resume or an --init that does not fit is refused."""
from __future__ import annotations

import json
import math

import pytest
import torch

from guidedinv.models.adm import ADMConfig
from guidedinv.schedule import VPSchedule
from guidedinv.training import CropSampler, SettingsChanged, Trainer, TrainSettings, export_safetensors, read_init
from guidedinv.training.noise_levels import lognormal_share_below, loss_weight, sample_timesteps, schedule_sigmas

TINY = ADMConfig(model_channels=32, num_res_blocks=1, channel_mult=(1, 1), attention_ds=(), out_channels=3, head_channels=None)
AB = VPSchedule.linear().alphas_cumprod
SIGMAS = schedule_sigmas(AB)


def _data() -> CropSampler:
    g = torch.Generator().manual_seed(0)
    return CropSampler([torch.randint(0, 256, (3, 20, 20), generator=g, dtype=torch.uint8) for _ in range(3)], 16)


def _settings(**kw) -> TrainSettings:
    return TrainSettings(**{"steps": 2, "batch": 4, "checkpoint_every": 2, "log_every": 1, "network": TINY.to_dict(), **kw})


# -- the distribution of the sampled noise levels -------------------------------------------------
def test_uniform_draws_exactly_what_the_plain_loop_drew():
    a = sample_timesteps(64, AB, torch.Generator().manual_seed(3))
    b = torch.randint(0, 1000, (64,), generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


@pytest.mark.parametrize("mean, std", [(-1.2, 1.2), (0.5, 0.6)])
def test_lognormal_sigmas_have_the_asked_mean_std_and_quantiles(mean, std):
    t = sample_timesteps(40_000, AB, torch.Generator().manual_seed(0), noise="lognormal", mean=mean, std=std)
    assert t.dtype == torch.long and int(t.min()) >= 0 and int(t.max()) <= 999
    log_sigma = SIGMAS[t].log()
    # nearest step in log space: the grid is finer than 0.02 in ln sigma above sigma 0.1, so the moments hold to ~0.03
    assert abs(float(log_sigma.mean()) - mean) < 0.03
    assert abs(float(log_sigma.std()) - std) < 0.03
    for sigma in (0.1, 0.3, 1.0, 2.0):
        share = float((SIGMAS[t] < sigma).double().mean())
        assert abs(share - lognormal_share_below(sigma, mean, std)) < 0.015, sigma


def test_lognormal_share_below_is_the_normal_cdf_of_ln_sigma():
    assert lognormal_share_below(math.exp(-1.2)) == pytest.approx(0.5)
    assert lognormal_share_below(math.exp(-1.2 + 1.2)) == pytest.approx(0.841345, abs=1e-6)  # Phi(1)


def test_the_uniform_share_mixes_in_uniform_t():
    n = 40_000
    every = sample_timesteps(n, AB, torch.Generator().manual_seed(1), noise="lognormal", uniform_share=1.0)
    assert abs(float(every.double().mean()) - 499.5) < 5  # uniform over 0..999: mean 499.5, sd 289 / sqrt(n) = 1.4
    counts = torch.bincount(every // 100, minlength=10).double() / n
    assert float((counts - 0.1).abs().max()) < 0.01
    mixed = sample_timesteps(n, AB, torch.Generator().manual_seed(2), noise="lognormal", uniform_share=0.3)
    below_one_uniform = float((SIGMAS < 1).double().mean())  # 0.27 of the linear schedule's steps
    expected = 0.7 * lognormal_share_below(1.0) + 0.3 * below_one_uniform
    assert abs(float((SIGMAS[mixed] < 1).double().mean()) - expected) < 0.015
    high = 0.7 * (1 - lognormal_share_below(10.0)) + 0.3 * float((SIGMAS > 10).double().mean())
    assert high > 0.09 and abs(float((SIGMAS[mixed] > 10).double().mean()) - high) < 0.01  # pure noise is still trained


# -- the loss weighting ---------------------------------------------------------------------------
def test_edm_weight_is_lambda_on_the_x0_error():
    # lambda(sigma) ||x0_hat - x0||^2 == w(sigma) ||v_hat - v||^2 for any v_hat, with x0_hat from v_hat
    g = torch.Generator().manual_seed(0)
    ab = AB[torch.tensor([0, 30, 120, 400, 999])].float().view(-1, 1, 1, 1)
    x0, eps, v_hat = (torch.randn(5, 3, 4, 4, generator=g) for _ in range(3))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0
    x0_hat = ab.sqrt() * x_t - (1 - ab).sqrt() * v_hat
    sd = 0.5
    sigma2 = ((1 - ab) / ab).view(-1)
    lam = (sigma2 + sd**2) / (sigma2 * sd**2)
    lhs = lam * (x0_hat - x0).pow(2).mean(dim=(1, 2, 3))
    rhs = loss_weight(ab.view(-1), "edm", sd) * (v_hat - v).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(lhs, rhs, rtol=1e-4, atol=0)


def test_edm_weight_limits_and_unit_data_variance():
    ab = torch.tensor([1 - 1e-9, 0.8, 0.5, 1e-9], dtype=torch.float64)
    w = loss_weight(ab, "edm", 0.5)
    assert float(w[0]) == pytest.approx(1.0, abs=1e-6) and float(w[-1]) == pytest.approx(4.0, rel=1e-6)
    assert bool((w[1:] > w[:-1]).all())  # rises with the noise level
    assert float(w[2]) == pytest.approx((1 + 0.25) / (0.25 * 2))  # sigma = 1
    assert torch.equal(loss_weight(ab, "edm", 1.0), torch.ones_like(ab))  # v-prediction is EDM with sigma_data 1
    assert torch.equal(loss_weight(ab, "v"), torch.ones_like(ab))


def _loss(settings: TrainSettings, tmp_path, name: str) -> torch.Tensor:
    trainer = Trainer(settings, _data(), tmp_path / name)
    x0, _ = trainer.data.batch(4, torch.Generator().manual_seed(5))
    with torch.no_grad():
        return trainer.loss(x0, None)


def test_the_options_off_give_the_plain_v_loss(tmp_path):
    plain = _loss(_settings(), tmp_path, "a")
    # by hand: the same draws (t, then eps) from the same seeded generator
    trainer = Trainer(_settings(), _data(), tmp_path / "b")
    x0, _ = trainer.data.batch(4, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (4,), generator=g)
    eps = torch.randn(x0.shape, generator=g)
    ab = AB[t].float().view(-1, 1, 1, 1)
    with torch.no_grad():
        out = trainer.net(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t)
    expected = (out - (ab.sqrt() * eps - (1 - ab).sqrt() * x0)).pow(2).mean()
    torch.testing.assert_close(plain, expected)
    torch.testing.assert_close(plain, _loss(_settings(weighting="edm", sigma_data=1.0), tmp_path, "c"), rtol=1e-6, atol=0)
    assert not torch.equal(plain, _loss(_settings(weighting="edm", sigma_data=0.5), tmp_path, "d"))
    assert not torch.equal(plain, _loss(_settings(noise="lognormal"), tmp_path, "e"))


# -- settings, resume and --init ---------------------------------------------------------------------
@pytest.mark.parametrize("change, needle", [
    ({"noise": "gaussian"}, "--noise gaussian: expected one of uniform, lognormal"),
    ({"uniform_share": 1.5}, "--uniform-share 1.5: expected a number in [0, 1]"),
    ({"uniform_share": -0.1}, "--uniform-share -0.1"),
    ({"noise_std": 0.0}, "--noise-std 0.0: expected a number in (0, 20)"),
    ({"noise_mean": float("nan")}, "--noise-mean nan"),
    ({"weighting": "snr"}, "--weighting snr: expected one of v, edm"),
    ({"sigma_data": 0.0}, "--sigma-data 0.0"),
])
def test_bad_noise_options_name_the_option(change, needle):
    from guidedinv.errors import InputError

    with pytest.raises(InputError) as bad:
        _settings(**change).check()
    assert needle in str(bad.value)
    _settings(uniform_share=1.0).check()


def test_a_resume_checks_the_noise_options_also_against_an_older_checkpoint(tmp_path):
    Trainer(_settings(noise="lognormal", uniform_share=0.3), _data(), tmp_path).train()
    other = Trainer(_settings(steps=3, noise="lognormal", uniform_share=0.2), _data(), tmp_path)
    with pytest.raises(SettingsChanged, match=r"--uniform-share 0.3 -> 0.2"):
        other.resume()
    # a checkpoint written before the options existed trained uniform t with the plain loss
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    saved = json.loads(state["settings"])
    for key in ("noise", "noise_mean", "noise_std", "uniform_share", "weighting", "sigma_data", "init"):
        del saved[key]
    state["settings"] = json.dumps(saved)
    torch.save(state, tmp_path / "checkpoint.pt")
    with pytest.raises(SettingsChanged, match=r"--noise uniform -> lognormal, --uniform-share 0.0 -> 0.3"):
        Trainer(_settings(steps=3, noise="lognormal", uniform_share=0.3), _data(), tmp_path).resume()
    assert Trainer(_settings(steps=3), _data(), tmp_path).resume()


def test_init_starts_net_and_ema_from_the_file_and_checks_it(tmp_path):
    from guidedinv.errors import InputError

    source = Trainer(_settings(seed=7), _data(), tmp_path / "src")
    path = export_safetensors(source.net, TINY, tmp_path / "m.safetensors", schedule="linear", prediction="v", kind="prior")
    weights, info = read_init(path, TINY, "linear")
    assert info["file"] == "m.safetensors" and len(info["digest"]) == 12
    trainer = Trainer(_settings(init=info), _data(), tmp_path / "run")
    trainer.start_from(weights)
    for (name, p), e, q in zip(source.net.state_dict().items(), trainer.ema.state_dict().values(),
                               trainer.net.state_dict().values()):
        assert torch.equal(p, q) and torch.equal(p, e), name
    trainer.train()
    again = Trainer(_settings(steps=3, init={"file": "m.safetensors", "digest": "000000000000"}), _data(), tmp_path / "run")
    with pytest.raises(SettingsChanged, match=r"--init m.safetensors \(digest [0-9a-f]{12}\) -> m.safetensors \(digest 0+\)"):
        again.resume()
    bigger = ADMConfig(model_channels=64, num_res_blocks=1, channel_mult=(1, 1), attention_ds=(), out_channels=3)
    with pytest.raises(InputError, match=r"its network differs .* \(--channels 32 --mult 1,1 --res-blocks 1\)"):
        read_init(path, bigger, "linear")
    with pytest.raises(InputError, match="give --schedule linear"):
        read_init(path, TINY, "cosine")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file of ours")
    with pytest.raises(InputError, match="--init .*junk.safetensors: not a readable safetensors file"):
        read_init(tmp_path / "junk.safetensors", TINY, "linear")


def test_train_prior_with_the_new_options_writes_them_into_the_card(tmp_path, monkeypatch, capsys):
    from test_training import BASE, _images, train

    monkeypatch.chdir(tmp_path)
    _images(tmp_path / "data")
    code, _, err = train(monkeypatch, capsys, "prior", "data", "--out", "a", *BASE, "--noise", "lognormal",
                         "--uniform-share", "0.25", "--weighting", "edm")
    assert code == 0, err
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["objective"] == ("v-prediction, ln sigma ~ N(-1.2, 1.2^2) at the nearest step, 25% of t uniform over "
                                 "1000 steps, EDM loss weighting (sigma_data 0.5)")
    code, _, err = train(monkeypatch, capsys, "prior", "data", "--out", "b", *BASE, "--init", "a/model.safetensors")
    assert code == 0, err
    assert "fine-tuned from model.safetensors" in json.loads((tmp_path / "b" / "card.json").read_text())["objective"]
    code, out, err = train(monkeypatch, capsys, "prior", "data", "--out", "c", *BASE[:2], "--mult", "1,2", *BASE[4:],
                           "--init", "a/model.safetensors")
    assert code == 2 and err.startswith("guidedinv: error: --init a/model.safetensors: its network differs"), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "c").exists()

