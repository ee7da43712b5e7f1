"""Mixed precision in generator training and sampling; the ddpm's loss weighting, noise sampling and samplers."""
from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from synthaug.generators import GeneratorTrainConfig, OptimizerStep, create_generator, list_generators, train_generator
from synthaug.generators.precision import Precision, check_precision, resolve_precision
from synthaug.generators.samplers import ddim, dpmpp_2m, sampler_timesteps
from synthaug.state import load_state

TINY_DDPM = {"base_width": 8, "channel_mults": [1, 2], "num_res_blocks": 1, "attention": False,
             "timesteps": 100, "sample_steps": 4}


def _data(n: int = 16, size: int = 16) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8),
                         torch.arange(n) % 2)


def _weights(gen) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in gen.parameters()])


def _train(precision: str | None, *, steps: int = 3, out=None, resume: bool = False, accelerator=None, **options):
    torch.manual_seed(0)  # the same initial weights in every run
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **{**TINY_DDPM, **options})
    config = GeneratorTrainConfig(steps=steps, batch_size=8, lr=1e-3, log_every=1, checkpoint_every=2,
                                  sample_every=0, samples_per_class=1, mixed_precision=precision)
    return train_generator(gen, _data(), config=config, out_dir=out, resume=resume, accelerator=accelerator)


def test_precision_names_are_checked_and_aliased():
    assert check_precision("fp32") == "no" and check_precision("BF16") == "bf16"
    with pytest.raises(ValueError, match=r"mixed_precision='int8'.*'no', 'bf16', 'fp16'"):
        check_precision("int8")
    with pytest.raises(ValueError, match="mixed_precision"):
        GeneratorTrainConfig(mixed_precision="half-ish")

    class Acc:
        mixed_precision = "bf16"
    assert resolve_precision(None, Acc()) == "bf16"      # the Accelerator's, when the config says nothing
    assert resolve_precision("no", Acc()) == "no"         # the config wins
    assert resolve_precision(None, None) == "no"


def test_auto_precision_is_bf16_only_where_it_is_faster(monkeypatch):
    """``auto``: bf16 on CPUs with AMX-BF16 (1.6-1.9x faster there), float32 on CPUs without (1.35x slower with
    avx512_bf16 alone); a config may say it, the training loop never sees it unresolved."""
    from synthaug.generators import precision as prec

    monkeypatch.setattr(prec, "cpu_features", lambda: {"cpu": "x", "amx_bf16": True, "avx512_bf16": True})
    assert prec.auto_precision("cpu") == "bf16" and resolve_precision("auto") == "bf16"
    monkeypatch.setattr(prec, "cpu_features", lambda: {"cpu": "x", "amx_bf16": False, "avx512_bf16": True})
    assert prec.auto_precision("cpu") == "no" and resolve_precision("AUTO") == "no"
    monkeypatch.setattr(prec, "cpu_features", lambda: {})  # not Linux: no flags to read
    assert prec.auto_precision("cpu") == "no"
    assert GeneratorTrainConfig(mixed_precision="auto").mixed_precision == "auto"
    with pytest.raises(ValueError, match="'no', 'bf16', 'fp16'"):  # the loop itself takes a resolved precision
        Precision("auto")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # a V100: emulated bf16
    assert prec.auto_precision("cuda:0") == "no"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # an A100: native bf16
    assert prec.auto_precision("cuda:0") == "bf16"
    trained = _train("auto", steps=1)
    assert trained.training_record["mixed_precision"] == "no"  # resolved and recorded as what ran


def test_bf16_training_is_not_silently_fp32():
    """The issue's measurement: under bf16 the weights after three steps were bit-identical to fp32's."""
    fp32, bf16 = _train("no"), _train("bf16")
    assert not torch.equal(_weights(fp32), _weights(bf16))
    assert fp32.training_record["mixed_precision"] == "no" and bf16.training_record["mixed_precision"] == "bf16"
    assert bf16.training_record["threads"] == torch.get_num_threads()
    assert torch.isfinite(_weights(bf16)).all()
    # weights stay float32 whatever the compute precision
    assert all(p.dtype == torch.float32 for p in bf16.parameters())


def test_bf16_from_the_accelerator_reaches_generator_training():
    from accelerate import Accelerator

    class LaunchedInBF16:
        """A real Accelerator seen as `accelerate launch --mixed_precision bf16` makes it (its state is a
        process-wide singleton, so the test does not build a second one)."""
        mixed_precision = "bf16"

        def __init__(self) -> None:
            self.inner = Accelerator(cpu=True)

        def __getattr__(self, name):
            return getattr(self.inner, name)

    gen = _train(None, accelerator=LaunchedInBF16())
    assert gen.training_record["mixed_precision"] == "bf16"


def test_every_generator_family_takes_a_bf16_step():
    for name in list_generators():
        if name.endswith("-tiny") or name in ("ddpm",):
            continue
        gen = create_generator(name, num_classes=2, image_size=32, channels=3)
        opts = gen.configure_optimizers(1e-4)
        prec = Precision("bf16")
        with prec.autocast():
            losses = gen.training_step(torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1]), opts,
                                       OptimizerStep(name, precision=prec))
        assert all(math.isfinite(float(v.detach())) for v in losses.values()), name


def test_fp16_scales_the_loss_and_unscales_before_the_step():
    """Under fp16 a GradScaler multiplies the loss; the optimizer must see the true gradients: one SGD step
    under fp16 moves the weights as far as under float32 (up to fp16 rounding of the forward)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 1)
    x = torch.randn(16, 8)
    moves = {}
    for precision in ("no", "fp16"):
        model = torch.nn.Linear(8, 1)
        model.load_state_dict(layer.state_dict())
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        prec = Precision(precision)
        with prec.autocast():
            loss = model(x).float().pow(2).mean()
        OptimizerStep("toy", precision=prec)(opt, loss)
        if prec.scaler is not None:
            assert prec.scaler.get_scale() > 1  # the loss really was scaled for this step
        prec.update()
        moves[precision] = (model.weight - layer.weight).detach()
    assert torch.allclose(moves["fp16"], moves["no"], rtol=0.05, atol=1e-3)


def test_fp16_skips_overflows_but_stops_a_diverged_run():
    """Under fp16 a non-finite gradient is an overflow the scaler handles (the step is skipped), up to
    MAX_OVERFLOWS in a row; after that the run is diverged and stops with NonFiniteLossError."""
    from synthaug.generators import NonFiniteLossError
    from synthaug.generators.optimizer_step import MAX_OVERFLOWS

    layer = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    prec = Precision("fp16")
    before = layer.weight.detach().clone()

    class InfiniteGradient(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return grad * float("inf")

    def blown_up_loss():  # a finite loss whose gradient is infinite
        return InfiniteGradient.apply(layer(torch.ones(2, 4))).sum()

    for _ in range(MAX_OVERFLOWS):
        OptimizerStep("toy", precision=prec)(opt, blown_up_loss())
        prec.update()
    assert torch.equal(layer.weight.detach(), before)  # every overflowing step was skipped
    with pytest.raises(NonFiniteLossError, match="in a row"):
        OptimizerStep("toy", precision=prec)(opt, blown_up_loss())
    fp32 = Precision("no")
    with pytest.raises(NonFiniteLossError, match="not finite"):  # float32: at once
        OptimizerStep("toy", precision=fp32)(opt, blown_up_loss())


def test_fp16_trains_a_gan_through_train_generator():
    """Two optimizers a step (D, then G) share one scaler, updated once per step."""
    torch.manual_seed(0)
    gen = create_generator("dcgan", num_classes=2, image_size=32, channels=3)
    config = GeneratorTrainConfig(steps=3, batch_size=8, lr=1e-4, log_every=1, checkpoint_every=0, sample_every=0,
                                  samples_per_class=1, mixed_precision="fp16")
    trained = train_generator(gen, _data(size=32), config=config)
    assert trained.training_record["mixed_precision"] == "fp16" and trained.training_record["steps"] == 3
    assert torch.isfinite(_weights(trained)).all()


def crash_at_step_3(monkeypatch) -> object:
    """Make every optimizer step 3 raise "simulated crash" (after the checkpoint of step 2); the original step."""
    original = OptimizerStep.__call__

    def crashing(self, optimizer, loss, name="loss"):
        if self.step == 3:
            raise RuntimeError("simulated crash")
        return original(self, optimizer, loss, name)

    monkeypatch.setattr(OptimizerStep, "__call__", crashing)
    return original


def test_bf16_resume_is_bit_identical_and_refuses_another_precision(tmp_path, monkeypatch):
    whole = _train("bf16", steps=4)
    original = crash_at_step_3(monkeypatch)
    with pytest.raises(RuntimeError, match="simulated crash"):
        _train("bf16", steps=4, out=tmp_path / "run")
    monkeypatch.setattr(OptimizerStep, "__call__", original)
    state = load_state(tmp_path / "run" / "resume")
    assert state["step"] == 2 and state["precision"]["precision"] == "bf16"
    with pytest.raises(ValueError, match="precision"):
        _train("no", steps=4, out=tmp_path / "run", resume=True)
    resumed = _train("bf16", steps=4, out=tmp_path / "run", resume=True)
    assert torch.equal(_weights(whole), _weights(resumed))


def test_sampling_runs_in_the_generators_precision():
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **TINY_DDPM)
    labels = torch.tensor([0, 1, 0, 1])
    fp32 = gen.sample(4, labels, generator=torch.Generator().manual_seed(1))
    gen.mixed_precision = "bf16"
    bf16 = gen.sample(4, labels, generator=torch.Generator().manual_seed(1))
    assert bf16.dtype == torch.uint8 and bf16.shape == fp32.shape
    assert not torch.equal(bf16, fp32)


# --------------------------------------------------------------------------- ddpm recipe options
def test_min_snr_weights_cap_the_low_noise_levels():
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, loss_weighting="min-snr",
                           snr_gamma=5.0, **TINY_DDPM)
    t = torch.arange(gen.timesteps)
    w = gen.loss_weights(t)
    abar = gen.alphas_cumprod
    snr = abar / (1 - abar)
    # v-prediction: min(SNR, 5) / (SNR + 1): below 5 the weight is SNR/(SNR+1), above it 5/(SNR+1)
    assert torch.allclose(w, torch.minimum(snr, torch.tensor(5.0)) / (snr + 1))
    assert float(w[0]) < 0.1 and float(w.max()) <= 5 / 6 + 1e-6
    eps = create_generator("ddpm", num_classes=2, image_size=16, channels=3, loss_weighting="min-snr",
                           prediction="eps", **TINY_DDPM)
    assert torch.allclose(eps.loss_weights(t), torch.minimum(snr, torch.tensor(5.0)) / snr)
    assert float(gen(torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 0, 1]))["loss"].detach()) > 0


def test_lognormal_noise_levels_concentrate_in_the_middle():
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, noise_sampling="lognormal",
                           timesteps=1000, base_width=8, channel_mults=[1, 2], attention=False)
    torch.manual_seed(0)
    t = gen.draw_timesteps(20000, torch.device("cpu"))
    assert t.min() >= 0 and t.max() <= 999
    abar = gen.alphas_cumprod[t]
    log_sigma = 0.5 * (torch.log1p(-abar) - torch.log(abar))
    # the drawn levels follow N(-1.2, 1.2^2) (the cosine schedule spans log sigma from about -5 to +6)
    assert abs(float(log_sigma.mean()) + 1.2) < 0.1 and abs(float(log_sigma.std()) - 1.2) < 0.1
    uniform = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **TINY_DDPM)
    assert uniform.draw_timesteps(5, torch.device("cpu")).shape == (5,)


def test_unknown_recipe_options_are_refused_with_the_choices():
    with pytest.raises(ValueError, match="loss_weighting.*min-snr"):
        create_generator("ddpm", num_classes=2, image_size=16, channels=3, loss_weighting="snr")
    with pytest.raises(ValueError, match="sampler.*dpmpp-2m"):
        create_generator("ddpm", num_classes=2, image_size=16, channels=3, sampler="euler")


# --------------------------------------------------------------------------- samplers
def _gaussian_denoiser(mean: float, std: float, abar_table: torch.Tensor):
    """The exact denoiser of data ~ N(mean, std^2) per pixel: E[x0 | x_t] in closed form."""
    def denoise(x, t):
        a = abar_table[t].double()
        s2 = 1 - a
        x0 = mean + a.sqrt() * std ** 2 / (a * std ** 2 + s2) * (x.double() - a.sqrt() * mean)
        eps = (x.double() - a.sqrt() * x0) / s2.sqrt()
        return eps.float(), x0.float()
    return denoise


@pytest.mark.parametrize("steps", [10, 20])
def test_dpmpp_2m_reaches_the_data_distribution_in_fewer_steps_than_ddim(steps):
    """On Gaussian data (std 0.5, as cells in [-1, 1]) with its exact denoiser, the deterministic samplers map
    N(0, 1) onto N(0.3, 0.5^2) as their steps grow; at 10 and 20 steps DPM-Solver++(2M) on its grid lands closer
    to the data's spread than DDIM (which shrinks it), and at 20 steps within 2 %."""
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **{**TINY_DDPM, "timesteps": 1000})
    abar = gen.alphas_cumprod
    denoise = _gaussian_denoiser(0.3, 0.5, abar)
    x_t = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    errors = {}
    for name, fn in (("ddim", ddim), ("dpmpp-2m", dpmpp_2m)):
        out = fn(x_t.clone(), sampler_timesteps(name, 1000, steps), denoise, abar)
        errors[name] = abs(float(out.std()) - 0.5)
        assert abs(float(out.mean()) - 0.3) < 0.02, (name, float(out.mean()))
    assert errors["dpmpp-2m"] < errors["ddim"], errors
    if steps == 20:
        assert errors["dpmpp-2m"] < 0.01, errors


def test_dpmpp_2m_matches_diffusers_scheduler():
    """The same solver as diffusers' DPMSolverMultistepScheduler (data prediction, 2M) on one schedule and one
    denoiser, at the timesteps diffusers chooses."""
    diffusers = pytest.importorskip("diffusers")
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **{**TINY_DDPM, "timesteps": 1000})
    abar = gen.alphas_cumprod
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=1000, trained_betas=gen.betas.numpy(),
                                                  algorithm_type="dpmsolver++", solver_order=2,
                                                  prediction_type="sample", lower_order_final=True,
                                                  final_sigmas_type="zero", timestep_spacing="linspace")
    sched.set_timesteps(12)
    assert [int(t) for t in sched.timesteps] == sampler_timesteps("dpmpp-2m", 1000, 12)  # the same grid
    denoise = _gaussian_denoiser(0.3, 0.2, abar)
    x = torch.randn(64, generator=torch.Generator().manual_seed(0))
    ref = x.clone()
    for t in sched.timesteps:
        _, x0 = denoise(ref, int(t))
        ref = sched.step(x0, t, ref).prev_sample
    ours = dpmpp_2m(x.clone(), [int(t) for t in sched.timesteps], denoise, abar)
    assert torch.allclose(ours, ref, atol=2e-3), float((ours - ref).abs().max())


def test_the_sampler_is_a_sampling_setting():
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **TINY_DDPM)
    labels = torch.tensor([0, 1])
    a = gen.sample(2, labels, generator=torch.Generator().manual_seed(3), sampler="dpmpp-2m")
    assert gen.sampler == "ddim"  # the call's override does not stick
    gen.sampler = "dpmpp-2m"
    assert gen.generator_options["sampler"] == "dpmpp-2m"  # saved with the model
    b = gen.sample(2, labels, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="sampler"):
        gen.sampler = "heun"


def test_dpmpp_2m_takes_as_many_steps_as_timesteps():
    """Steps close to the number of timesteps round onto the same timestep twice; the grid drops the repeat."""
    assert sampler_timesteps("dpmpp-2m", 10, 10) == list(range(9, 0, -1))
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3,
                           **{**TINY_DDPM, "timesteps": 10, "sample_steps": 10, "sampler": "dpmpp-2m"})
    images = gen.sample(2, torch.tensor([0, 1]), generator=torch.Generator().manual_seed(0))
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8


def test_a_sampling_setting_changed_during_training_does_not_block_resume(tmp_path, monkeypatch):
    """gen.guidance / gen.sampler change how the model samples, not how it trains: a state saved after such a change
    (e.g. by a check that samples with other settings) resumes."""
    original = crash_at_step_3(monkeypatch)
    torch.manual_seed(0)
    gen = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **TINY_DDPM)
    gen.sampler, gen.guidance = "dpmpp-2m", 2.0  # recorded in the options the resume state keeps
    config = GeneratorTrainConfig(steps=4, batch_size=8, lr=1e-3, log_every=1, checkpoint_every=2, sample_every=0,
                                  samples_per_class=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_generator(gen, _data(), config=config, out_dir=tmp_path / "run")
    monkeypatch.setattr(OptimizerStep, "__call__", original)
    fresh = create_generator("ddpm", num_classes=2, image_size=16, channels=3, **TINY_DDPM)
    resumed = train_generator(fresh, _data(), config=config, out_dir=tmp_path / "run", resume=True)
    assert resumed.training_record["steps"] == 4


def test_cpu_features_name_the_bf16_units_from_cpuinfo(monkeypatch, tmp_path):
    """What the gallery rows and throughput records say of the CPU (bf16 is fast only with AMX-BF16)."""
    import builtins

    from synthaug.generators.precision import cpu_features

    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu avx512f avx512_bf16 sse\n")
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path,
                                                                         *a, **k))
    assert cpu_features() == {"cpu": "Some CPU 9000", "amx_bf16": False, "avx512_bf16": True}
    info.write_text("model name\t: Other\nflags\t\t: amx_bf16 amx_tile avx512_bf16\n")
    assert cpu_features() == {"cpu": "Other", "amx_bf16": True, "avx512_bf16": True}
