"""Tests that need a CUDA device (skipped without one; `bench/run_all.py --device cuda` runs them).

The library on a GPU gives the numbers it gives on the CPU: influence of every layer (and its
parity with Captum's multi-layer call), a seeded attack, both restorations; hooks are removed
and results come back as CPU tensors.
"""

import pytest
import torch
from torch import nn

from neuronviz.core.probe import hook_count

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CONV = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def _model(name, device):
    from neuronviz.core.models import load_model

    return load_model(name, device=device, weights=None if name == "resnet18" else "default")


@pytest.mark.parametrize("name", ["digits-cnn", "digits-resnet", "resnet18"])
def test_influence_on_cuda_equals_the_cpu_and_captum(name):
    from neuronviz.methods.influence import neuron_influence, probe_layers

    cpu, gpu = _model(name, "cpu"), _model(name, "cuda")
    torch.manual_seed(0)
    x = torch.rand(3, cpu.channels, *cpu.input_size)
    layers = [info.name for info in probe_layers(cpu)]
    target = cpu.predict(x)[0]
    on_cpu = neuron_influence(cpu, x, layers=layers, target=target)
    on_gpu = neuron_influence(gpu, x.cuda(), layers=layers, target=target)
    for layer in layers:
        a, b = on_cpu[layer], on_gpu[layer]
        assert b.values.device.type == "cpu" and b.activations.device.type == "cpu"
        scale = float(a.values.abs().max()) or 1.0
        assert float((a.values - b.values).abs().max()) / scale < 1e-3, layer  # TF32/cuDNN vs CPU kernels
        assert b.values.untyped_storage().data_ptr() != b.activations.untyped_storage().data_ptr()
    try:
        from captum.attr import LayerGradientXActivation
    except ImportError:
        pytest.skip("captum is not installed on this machine")
    conv = [info.name for info in probe_layers(gpu, kinds=CONV)]
    refs = LayerGradientXActivation(gpu, gpu.layers(conv)).attribute(x.cuda(), target=target.cuda())
    ours = neuron_influence(gpu, x.cuda(), layers=conv, target=target)
    for layer, ref in zip(conv, refs):
        ref = (ref.flatten(2).sum(2) if ref.dim() > 2 else ref.flatten(1)).cpu()
        scale = float(ref.abs().max()) or 1.0
        assert float((ours[layer].values - ref).abs().max()) / scale < 1e-5, layer


def test_hooks_removed_and_model_untouched_on_cuda():
    from neuronviz.methods.influence import neuron_influence

    model = _model("digits-resnet", "cuda")
    hooks = hook_count(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    neuron_influence(model, torch.rand(2, 1, 28, 28, device="cuda"))
    assert hook_count(model) == hooks
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_to_cpu_one_transfer_gives_independent_tensors():
    from neuronviz.methods.influence import _to_cpu

    a, b = torch.arange(6.0).view(2, 3), torch.arange(4.0).view(2, 2) + 10
    moved = _to_cpu([a.cuda(), b.cuda()])
    assert [t.device.type for t in moved] == ["cpu", "cpu"]
    assert torch.equal(moved[0], a) and torch.equal(moved[1], b)
    assert moved[0].untyped_storage().data_ptr() != moved[1].untyped_storage().data_ptr()


def test_attack_and_restorations_on_cuda():
    pytest.importorskip("torchattacks")
    from neuronviz.data.datasets import digits
    from neuronviz.methods.attacks import run_attack
    from neuronviz.methods.defences import get_defence

    model = _model("digits-cnn", "cuda")
    x, y = digits("test")
    x, y = x[:8], y[:8]
    report = run_attack(model, x, "pgd", {"eps": 0.1, "steps": 10}, labels=y, seed=0)
    assert report.adversarial.device.type == "cpu"
    assert float((report.adversarial - x).abs().max()) <= 0.1 + 1e-6
    assert float(report.success.float().mean()) > 0.5  # PGD-10 at eps 0.1 fools most digits
    for name in ("nip-guided", "pssr"):
        defense = get_defence(name)
        restored = defense.restore(
            model, report.adversarial,
            target=report.clean_pred if defense.needs_target else None,
            reference=x if defense.needs_reference else None,
        )
        assert restored.restored.shape == x.shape and restored.restored.device.type == "cpu"
        assert 0.0 <= float(restored.restored.min()) and float(restored.restored.max()) <= 1.0
