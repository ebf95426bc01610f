"""Every built-in entry passes the contract checks plugin authors run (neuronviz.testing), and the checks can fail."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from neuronviz.methods.attribution import list_attributions
from neuronviz.methods.defences import list_defences
from neuronviz.methods.influence import list_influence_methods
from neuronviz.testing import check_attribution, check_defence, check_influence_method, check_model_source

# cheaper settings for the iterative defences (the contract is the same at 3 steps)
FAST_DEFENCES = {"nip-guided": {"steps": 3}, "nip-reactive": {"steps": 3}}


@pytest.mark.parametrize("name", [d.name for d in list_defences()])
def test_every_built_in_defence_keeps_the_contract(name, digits_cnn, digits_test):
    check_defence(name, digits_cnn, digits_test[0][:3], params=FAST_DEFENCES.get(name))


@pytest.mark.parametrize("name", [m.name for m in list_attributions()])
def test_every_built_in_attribution_method_keeps_the_contract(name, digits_cnn, digits_test):
    check_attribution(name, digits_cnn, digits_test[0][:2])


@pytest.mark.parametrize("name", [m.name for m in list_influence_methods()])
def test_every_built_in_influence_method_keeps_the_contract(name, digits_cnn, digits_test):
    check_influence_method(name, digits_cnn, digits_test[0][:2])


@pytest.mark.parametrize(
    ("source", "spec", "create"),
    [
        ("embedded", "digits-cnn", {}),
        ("zoo", "resnet18", {"weights": None}),  # random initialisation: nothing is downloaded
        ("timm", "timm:vit_tiny_patch16_224?img_size=32&depth=1", {"weights": None}),
    ],
)
def test_the_built_in_sources_keep_the_contract(source, spec, create):
    model = check_model_source(source, spec, **create)
    assert model.num_classes == len(model.class_names)


def test_a_broken_entry_fails_its_check(digits_cnn, digits_test, monkeypatch):
    """An attribution that returns maps of the wrong size, and a defence whose restore_for ignores
    the call, are named by the checks."""
    from neuronviz.methods.attribution import get_attribution
    from neuronviz.methods.defences import get_defence

    saliency = get_attribution("saliency")
    monkeypatch.setattr(type(saliency), "attribute", lambda self, model, x, target, layer, n_steps: (torch.zeros(x.shape[0], 3, 3), None))
    with pytest.raises(AssertionError, match="values of shape"):
        check_attribution("saliency", digits_cnn, digits_test[0][:2])
    pssr = get_defence("pssr")
    real = type(pssr).restore_for

    def shifted(self, model, x, **kwargs):
        result = real(self, model, x, **kwargs)
        return dataclasses.replace(result, restored=result.restored * 0.5)

    monkeypatch.setattr(type(pssr), "restore_for", shifted)
    with pytest.raises(AssertionError, match="restore_for and restore disagree"):
        check_defence("pssr", digits_cnn, digits_test[0][:2])
