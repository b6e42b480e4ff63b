"""The faster paths against the plain fp32 eager computation, each within a stated tolerance.

Plain = the released computation: four gate convolutions, the full first step, every output head, ReLU out of
place, NCHW. Tolerance for fused gates, zero-state skip, unused heads, in-place ReLU and channels_last:
max |fast - plain| <= 1e-5 x max |plain|, per output and per gradient tensor (fp32 rounding is ~1e-7; these
paths only reorder sums or use other convolution kernels). Inputs are 32x48, weights
tests/fixtures/make_weights.py's (O(1) activations).
bf16 autocast (--amp) does change results: it has its own, stated tolerances (helpers.BF16_*).
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from helpers import (
    BF16_GRAD_COSINE,
    BF16_LOSS_REL,
    BF16_TEST_MAX,
    BF16_TEST_MEAN,
    FAST,
    FP16_TEST_MAX,
    FP16_TEST_MEAN,
    PLAIN,
    REL,
    assert_near,
    generator_from,
    mixture_batch,
)

from models import checkpoint
from models.ibcln_model import resolve_amp, run_cascade
from models.networks import ConvLSTMGenerator
from options.model_config import create_model
from util import machine
from util.errors import UserError


def _step_with_grads(net: ConvLSTMGenerator, x: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None,
                     heads: bool = True) -> tuple[list[torch.Tensor], dict[str, torch.Tensor | None], list]:
    """Return (outputs, parameter grads, input grads) of one generator step under a fixed random projection."""
    net.zero_grad(set_to_none=True)
    inputs = [t for t in (x, h, c) if t is not None]
    for t in inputs:
        t.grad = None
    outputs = [o for o in net(x, h, c, heads=heads) if o is not None]
    gen = torch.Generator().manual_seed(5)
    loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outputs)
    loss.backward()
    grads = {name: None if p.grad is None else p.grad.clone() for name, p in net.named_parameters()}
    return [o.detach() for o in outputs], grads, [t.grad.clone() for t in inputs if t.grad is not None]


def _inputs(state: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 9, 32, 48, generator=gen).requires_grad_()
    if not state:
        return x, None, None
    h = (torch.rand(2, 256, 8, 12, generator=gen) - 0.5).requires_grad_()
    c = (torch.randn(2, 256, 8, 12, generator=gen)).requires_grad_()
    return x, h, c


def _assert_grads_close(got: dict, ref: dict) -> None:
    assert got.keys() == ref.keys()
    for name, g in got.items():
        if g is None:  # a shortcut left this parameter out: it must have had no effect in the plain path
            assert ref[name] is None or not ref[name].any(), f"{name}: skipped but plain gradient is non-zero"
        else:
            assert_near(g, ref[name], what=f"gradient of {name}")


# ----- the generator's shortcuts -------------------------------------------------------------------------------

def test_fused_gates_match_four_convolutions_with_gradients(golden_states):
    x, h, c = _inputs(state=True)
    ref_out, ref_grads, ref_in = _step_with_grads(generator_from(golden_states[0], **PLAIN), x, h, c)
    out, grads, in_grads = _step_with_grads(generator_from(golden_states[0], **{**PLAIN, "fused_gates": True}), x, h, c)
    assert len(out) == len(ref_out) == 5
    for a, b in zip(out, ref_out):
        assert_near(a, b)
    assert all(g is not None for g in grads.values())  # every gate weight gets its gradient through the fusion
    _assert_grads_close(grads, ref_grads)
    for a, b in zip(in_grads, ref_in):
        assert_near(a, b)
    # The state is not trivial: h and c change the result.
    other, _, _ = _step_with_grads(generator_from(golden_states[0], **PLAIN), x, torch.zeros_like(h),
                                   torch.zeros_like(c))
    assert (other[0] - ref_out[0]).abs().max() > 1e-3


@pytest.mark.parametrize("fused", [False, True])
def test_zero_state_skip_matches_the_full_first_step(golden_states, fused):
    x, _, _ = _inputs(state=False)
    zeros = torch.zeros(2, 256, 8, 12)
    ref_out, ref_grads, ref_in = _step_with_grads(generator_from(golden_states[0], **PLAIN), x,
                                                  zeros.clone().requires_grad_(),
                                                  zeros.clone().requires_grad_())
    net = generator_from(golden_states[0], **{**PLAIN, "fused_gates": fused, "skip_zero_state": True})
    out, grads, in_grads = _step_with_grads(net, x, None, None)
    for a, b in zip(out, ref_out):
        assert_near(a, b)
    # The forget gate has no effect at c = 0, and the h half of every gate weight sees only zeros.
    assert grads["conv_f.0.weight"] is None or not grads["conv_f.0.weight"].any()
    assert not ref_grads["conv_f.0.weight"].any() and not ref_grads["conv_i.0.weight"][:, 256:].any()
    _assert_grads_close(grads, ref_grads)
    assert_near(in_grads[0], ref_in[0])


def test_unused_heads_are_left_out_only_when_allowed(golden_states):
    x, h, c = _inputs(state=True)
    with torch.no_grad():
        full = generator_from(golden_states[0], **FAST)(x, h, c, heads=True)
        lean = generator_from(golden_states[0], **FAST)(x, h, c, heads=False)
        kept = generator_from(golden_states[0], **{**FAST, "skip_unused_heads": False})(x, h, c, heads=False)
    assert lean[3] is None and lean[4] is None
    assert full[3].shape == (2, 3, 16, 24) and full[4].shape == (2, 3, 8, 12)
    for a, b in zip(lean[:3], full[:3]):
        assert torch.equal(a, b)
    assert torch.equal(kept[3], full[3]) and torch.equal(kept[4], full[4])


def test_inplace_relu_gives_identical_values_and_gradients(golden_states):
    x, h, c = _inputs(state=True)
    ref_out, ref_grads, _ = _step_with_grads(generator_from(golden_states[0], **PLAIN), x, h, c)
    out, grads, _ = _step_with_grads(generator_from(golden_states[0], **{**PLAIN, "inplace_relu": True}), x, h, c)
    assert all(torch.equal(a, b) for a, b in zip(out, ref_out))
    assert all(torch.equal(grads[k], ref_grads[k]) for k in grads)


def test_fast_cascade_matches_plain_cascade(golden_states):
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(7))
    with torch.inference_mode():
        ref_Ts, ref_Rs, ref_half, ref_quarter = run_cascade(*[generator_from(s, **PLAIN) for s in golden_states], image)
        Ts, Rs, half, quarter = run_cascade(*[generator_from(s, **FAST) for s in golden_states], image)
    for a, b in zip(Ts + Rs + [half, quarter], ref_Ts + ref_Rs + [ref_half, ref_quarter]):
        assert_near(a, b)
    assert (ref_Ts[3] - image).abs().max() > 0.05  # the cascade did something


def test_channels_last_cascade_matches_plain(golden_states):
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(8))
    plain = (generator_from(golden_states[0], **PLAIN), generator_from(golden_states[1], **PLAIN))
    fast = [generator_from(s, **FAST).to(memory_format=torch.channels_last) for s in golden_states]
    with torch.inference_mode():
        ref_Ts, ref_Rs, _, _ = run_cascade(*plain, image)
        Ts, Rs, _, _ = run_cascade(*fast, image.contiguous(memory_format=torch.channels_last))
    assert Ts[3].is_contiguous(memory_format=torch.channels_last) and not Ts[3].is_contiguous()
    for a, b in zip(Ts + Rs, ref_Ts + ref_Rs):
        assert_near(a, b)


def test_skipping_the_last_R_pass_leaves_every_T_bit_identical(golden_states):
    image = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(10))
    nets = [generator_from(s, **FAST) for s in golden_states]
    with torch.inference_mode():
        ref_Ts, ref_Rs, _, _ = run_cascade(*nets, image)
        Ts, Rs, _, _ = run_cascade(*nets, image, last_R=False)
    assert len(Ts) == len(ref_Ts) == 4 and len(Rs) == 3 and len(ref_Rs) == 4
    assert all(torch.equal(a, b) for a, b in zip(Ts + Rs, ref_Ts + ref_Rs[:3]))


def test_fused_gates_follow_weight_changes(golden_states):
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    g_t, g_r = generator_from(golden_states[0], **FAST), generator_from(golden_states[1], **FAST)
    with torch.inference_mode():
        first = run_cascade(g_t, g_r, image)[0][3]
        g_t.load_state_dict(golden_states[1])  # now both generators hold the G_R weights
        swapped = run_cascade(g_t, g_r, image)[0][3]
        expected = run_cascade(*[generator_from(golden_states[1], **PLAIN) for _ in range(2)], image)[0][3]
    assert (swapped - first).abs().max() > 1e-3
    assert_near(swapped, expected)
    with torch.no_grad():
        g_t.conv_o[0].weight.mul_(0.5)  # an in-place change, as an optimiser step makes
    with torch.inference_mode():
        halved = run_cascade(g_t, g_r, image)[0][3]
    reference = generator_from(golden_states[1], **PLAIN)
    with torch.no_grad():
        reference.conv_o[0].weight.mul_(0.5)
    with torch.inference_mode():
        assert_near(halved, run_cascade(reference, generator_from(golden_states[1], **PLAIN), image)[0][3])


# ----- the model: options, checkpoints, training step ----------------------------------------------------------

def _train_model(make_options, tmp_path, *flags: str):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        opt = make_options("train", "--dataroot", str(tmp_path), "--name", "fp", *flags)
        torch.manual_seed(0)
        return create_model(opt)


def _losses_and_grads(model) -> tuple[dict, dict]:
    model.train()
    model.set_input(mixture_batch())
    torch.manual_seed(4)  # the same dropout masks
    model.forward()
    model.set_requires_grad(model.netD, False)
    model.backward_G()
    losses = {k: getattr(model, "loss_" + k).item() for k in ("idt_T", "res", "MP", "G", "idt_R")}
    grads = {f"{n}.{k}": p.grad.clone() for n in ("G_T", "G_R") for k, p in model.nets()[n].named_parameters()
             if p.grad is not None}
    return losses, grads


def test_training_step_of_the_fast_options_matches_plain(make_options, tmp_path, golden_states):
    plain = _train_model(make_options, tmp_path, "--no_zero_state_skip")
    for name in ("G_T", "G_R"):
        plain.nets()[name].configure(skip_unused_heads=False, inplace_relu=False)
    default = _train_model(make_options, tmp_path)
    nhwc = _train_model(make_options, tmp_path, "--channels_last", "--fused_gates")
    for model in (plain, default, nhwc):  # D and VGG are equal by seeding; these generator weights give O(1) signals
        model.nets()["G_T"].load_state_dict(golden_states[0])
        model.nets()["G_R"].load_state_dict(golden_states[1])
    assert default.netG_T.skip_zero_state and not default.netG_T.fused_gates and not plain.netG_T.skip_zero_state
    assert nhwc.netG_T.fused_gates
    assert nhwc.netG_T.conv5[0].weight.is_contiguous(memory_format=torch.channels_last)
    ref_losses, ref_grads = _losses_and_grads(plain)
    for model, grad_rel in ((default, REL), (nhwc, 5e-3)):
        losses, grads = _losses_and_grads(model)
        for key, value in ref_losses.items():
            assert losses[key] == pytest.approx(value, rel=REL), key
        # Dropout is active (train mode) and draws the same masks in channels_last, so gradients are comparable.
        # channels_last's other kernels move pre-activations by ~1e-7, which flips a few ReLUs sitting at 0 over
        # the three steps: its gradients agree to a few 1e-3 of their largest entry (the exact shortcuts to 1e-5);
        # measured: up to 1.9e-3 on an AMD EPYC, 2.6e-3 (G_T.outframe2) on an Intel Xeon with AMX.
        assert ref_grads.keys() == grads.keys()
        for key in ref_grads:
            assert_near(grads[key], ref_grads[key], rel=grad_rel, what=key)
    assert nhwc.fake_Ts[3].is_contiguous(memory_format=torch.channels_last)


def test_each_ground_truth_goes_through_vgg_once_per_step(make_options, tmp_path):
    model = _train_model(make_options, tmp_path)
    calls: list[tuple[bool, torch.Tensor]] = []
    vgg = model.vgg

    def counting(x):
        calls.append((torch.is_grad_enabled(), x))
        return vgg(x)

    model.vgg = counting
    model.set_input(mixture_batch())
    model.optimize_parameters()
    targets = [x for grad, x in calls if not grad]
    assert len(calls) == 6 and len(targets) == 3  # 3 scales: the prediction with gradient, the target without
    assert [t is ref for t, ref in zip(targets, (model.real_T, model.real_T2, model.real_T4))] == [True] * 3


def test_fast_options_keep_the_checkpoint_format(make_options, tmp_path, generator_keys, golden_states):
    model = _train_model(make_options, tmp_path, "--channels_last", "--fused_gates")
    for name in ("G_T", "G_R"):
        assert [[k, list(v.shape)] for k, v in model.nets()[name].state_dict().items()] == generator_keys
    model.nets()["G_T"].load_state_dict(golden_states[0])
    checkpoint.save_networks(model, "fp")
    saved = torch.load(tmp_path / "checkpoints" / "fp" / "fp_net_G_T.pth", weights_only=True)
    assert [[k, list(v.shape)] for k, v in saved.items()] == generator_keys
    assert all(v.is_contiguous() for v in saved.values())  # standard NCHW tensors, whatever the run's format
    assert {"conv_i.0.weight", "conv_f.0.weight", "conv_g.0.weight", "conv_o.0.weight"} <= saved.keys()
    plain = ConvLSTMGenerator()
    plain.load_state_dict(saved, strict=True)
    assert all(torch.equal(saved[k], golden_states[0][k]) for k in saved)


def test_compile_flag_keeps_the_checkpoint_keys(make_options, tmp_path, generator_keys):
    import torch._inductor.config as inductor_config

    # config.patch restores the value after the test (monkeypatch would delete the config entry on undo).
    with inductor_config.patch(freezing=False):
        opt = make_options("test", "--dataroot", str(tmp_path), "--name", "c", "--compile")
        model = create_model(opt)
        assert [[k, list(v.shape)] for k, v in model.nets()["G_T"].state_dict().items()] == generator_keys
        assert inductor_config.freezing  # test weights are constants for inductor (prepacked on the CPU)


def test_amp_on_the_cpu_is_bf16_on_capable_cpus_and_a_clear_error_elsewhere(make_options, tmp_path, monkeypatch):
    def model(*args: str):
        return create_model(make_options("test", "--dataroot", str(tmp_path), "--name", "a", *args))

    with pytest.raises(UserError, match=r"--amp fp16: .*on the CPU use --amp bf16"):
        model("--amp", "fp16")
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: False)
    for args in (["--amp"], ["--amp", "bf16"]):
        with pytest.raises(UserError, match=r"--amp .*no bfloat16 instructions .*drop --amp"):
            model(*args)
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: True)
    assert model("--amp").amp_dtype == torch.bfloat16 and model("--amp", "bf16").amp_dtype == torch.bfloat16
    assert model().amp_dtype is None and resolve_amp("none", torch.device("cpu")) is None


def test_bf16_test_cascade_is_within_its_tolerance_of_fp32(make_options, tmp_path, golden_states, monkeypatch):
    # Where the CPU lacks bf16 instructions torch emulates them: slower, but the same numbers.
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: True)
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    outputs = []
    for args in ([], ["--amp", "bf16"]):
        model = create_model(make_options("test", "--dataroot", str(tmp_path), "--name", "a", *args))
        model.nets()["G_T"].load_state_dict(golden_states[0])
        model.nets()["G_R"].load_state_dict(golden_states[1])
        model.eval()
        model.set_input({"I": image, "T": image, "alpha": torch.ones(1), "isNatural": torch.ones(1, dtype=bool)})
        model.test()
        assert all(t.dtype == torch.float32 for t in model.fake_Ts + model.fake_Rs)  # saved as fp32 images
        outputs.append(model.fake_Ts[1:] + model.fake_Rs[1:])
    for ref, got in zip(*outputs):
        diff = (got - ref).abs()
        assert 0 < float(diff.max()) <= BF16_TEST_MAX and float(diff.mean()) <= BF16_TEST_MEAN


def test_bf16_training_step_is_within_its_tolerance_of_fp32(make_options, tmp_path, golden_states, monkeypatch):
    monkeypatch.setattr(machine, "cpu_has_native_bf16", lambda: True)
    results = []
    for args in ([], ["--amp", "bf16"]):
        model = _train_model(make_options, tmp_path, *args)
        model.nets()["G_T"].load_state_dict(golden_states[0])
        model.nets()["G_R"].load_state_dict(golden_states[1])
        results.append(_losses_and_grads(model))
        assert all(isinstance(getattr(model, "loss_" + k).item(), float) for k in ("idt_T", "MP"))
        assert all(getattr(model, "loss_" + k).dtype == torch.float32 for k in ("idt_T", "res", "MP", "G", "idt_R"))
    (ref_losses, ref_grads), (losses, grads) = results
    assert losses != ref_losses  # bf16 did run
    for key, value in ref_losses.items():
        assert losses[key] == pytest.approx(value, rel=BF16_LOSS_REL), key
    assert grads.keys() == ref_grads.keys()
    for key, ref in ref_grads.items():
        cosine = torch.nn.functional.cosine_similarity(grads[key].flatten(), ref.flatten(), dim=0)
        assert float(cosine) >= BF16_GRAD_COSINE, key


def _rounding_every_activation_to(dtype: torch.dtype, state: dict) -> ConvLSTMGenerator:
    """Return a generator whose weights and every layer output are rounded to dtype (computed in fp32)."""
    net = generator_from({k: v.to(dtype).float() for k, v in state.items()}, **PLAIN)
    for module in net.modules():
        if not list(module.children()):
            module.register_forward_hook(lambda mod, args, out: out.to(dtype).float())
    return net


def test_fp16_rounding_stays_within_the_fp16_tolerance(golden_states):
    # The CPU has no fast fp16 convolutions; rounding each layer's output to fp16 is what CUDA's fp16 autocast
    # does to activations (with fp32 accumulation inside each convolution). The same rounding to bf16 gives the
    # errors of CPU bf16 autocast, which is how this stand-in was checked.
    image = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref_Ts, ref_Rs, _, _ = run_cascade(*[generator_from(s, **PLAIN) for s in golden_states], image)
        nets = [_rounding_every_activation_to(torch.float16, state) for state in golden_states]
        Ts, Rs, _, _ = run_cascade(*nets, image.half().float())
    for got, ref in zip(Ts[1:] + Rs[1:], ref_Ts[1:] + ref_Rs[1:]):
        diff = (got.clamp(0, 1) - ref.clamp(0, 1)).abs()
        assert 0 < float(diff.max()) <= FP16_TEST_MAX and float(diff.mean()) <= FP16_TEST_MEAN


def test_fp16_inference_that_overflows_is_redone_in_fp32_and_said_once(make_options, tmp_path):
    # CPU autocast runs fp16 too (slowly; hence ngf 8). Inputs above fp16's largest value, 65504, overflow it in
    # the first convolution; fp32 has the range. Without the guard the outputs would be NaN.
    torch.manual_seed(0)
    model = create_model(make_options("test", "--dataroot", str(tmp_path), "--name", "a", "--ngf", "8"))
    model.eval()
    bright = 7e4 * torch.rand(1, 3, 48, 64, generator=torch.Generator().manual_seed(2))
    expected = model.infer(bright)  # fp32
    model.amp_dtype = torch.float16  # what --amp fp16 sets on a GPU
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        whole = model.infer(bright)
        tiled = model.infer(bright, tile=32, overlap=8)  # 2 x 3 tiles, each redone
    said = [w for w in caught if "overflowed fp16" in str(w.message)]
    assert len(said) == 1 and model.fp16_redone == 1 + 6
    for got, ref in zip(whole[0] + whole[1], expected[0] + expected[1]):
        assert torch.equal(got, ref)  # the whole image, computed again in fp32
    assert all(bool(x.isfinite().all()) for x in tiled[0] + tiled[1])
    ordinary = bright / 7e4
    reference = model.infer(ordinary)
    assert model.fp16_redone == 7  # no overflow, no redo: fp16 did run
    model.amp_dtype = None
    assert float((model.infer(ordinary)[0][3] - reference[0][3]).abs().max()) > 0


def test_fast_generator_survives_deepcopy(golden_states):
    # Models are copied (e.g. by EMA or DataParallel replicas): the shortcuts' state must survive that.
    net = generator_from(golden_states[0], **FAST)
    with torch.inference_mode():
        net(torch.rand(1, 9, 16, 16))
    clone = copy.deepcopy(net)
    with torch.inference_mode():
        a, b = net(torch.ones(1, 9, 16, 16))[0], clone(torch.ones(1, 9, 16, 16))[0]
    assert torch.equal(a, b)
