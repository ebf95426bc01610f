"""The defence registry: every entry carries its facts, and restore_for is the one call that
gives each defence what it needs (and nothing it does not) without the caller asking."""

from __future__ import annotations

import pytest
import torch

from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences import (
    Defence,
    Identity,
    Restored,
    get_defence,
    list_defences,
    register_defence,
    restore,
)
from neuronviz.workflows.batch import defence_label


@pytest.fixture(scope="module")
def attacked(digits_cnn, digits_test):
    x = digits_test[0][:3]
    report = run_attack(digits_cnn, x, "fgsm", {"eps": 0.2}, seed=0)
    return x, report.clean_pred, report.adversarial


def test_entries_carry_their_facts():
    facts = {d.name: (d.short_label, d.oracle, d.needs_target, d.needs_reference) for d in list_defences()}
    assert facts == {
        "none": ("no defence", False, False, False),
        "nip-guided": ("NIP (guided)", True, True, False),
        "nip-oracle": ("NIP (oracle)", True, False, True),
        "nip-reactive": ("NIP (reactive)", False, False, False),
        "pssr": ("PSSR", False, False, False),
        "jpeg": ("JPEG", False, False, False),
        "bit-depth": ("Bit depth", False, False, False),
        "median": ("Median", False, False, False),
        "random-resize-pad": ("Resize+pad", False, False, False),
    }
    for defense in list_defences():
        assert defense.label and defense.paper and defense.summary and defense.description
        assert defense.deployable is not defense.oracle
        assert defence_label(defense.name) == defense.short_label
    assert [d.name for d in list_defences(include_none=False)] == [
        "nip-guided", "nip-oracle", "nip-reactive", "pssr", "jpeg", "bit-depth", "median", "random-resize-pad",
    ]
    assert defence_label("not-registered") == "not-registered"


def test_restore_for_equals_the_explicit_call(digits_cnn, attacked):
    x, benign, adversarial = attacked
    for defense in list_defences():
        params = {"steps": 3} if defense.name.startswith("nip-") and defense.name != "nip-oracle" else None
        given = defense.restore_for(digits_cnn, adversarial, benign=benign, clean=x, params=params)
        explicit = restore(
            digits_cnn, adversarial, defense.name, params,
            target=benign if defense.needs_target else None,
            reference=x if defense.needs_reference else None,
        )
        assert torch.equal(given.restored, explicit.restored), defense.name
        assert torch.equal(given.prediction, explicit.prediction), defense.name
        # what the entry says it returns is what it returns
        assert set(given.trace) == set(defense.trace_keys), defense.name
        assert set(given.extras) == set(defense.extras_keys), defense.name


def test_restore_for_names_what_is_missing(digits_cnn, attacked):
    x, benign, adversarial = attacked
    with pytest.raises(InputError, match="target="):
        get_defence("nip-guided").restore_for(digits_cnn, adversarial, clean=x)
    with pytest.raises(InputError, match="reference="):
        get_defence("nip-oracle").restore_for(digits_cnn, adversarial, benign=benign)
    # a defence that needs neither ignores both
    plain = get_defence("pssr").restore_for(digits_cnn, adversarial)
    assert plain.restored.shape == adversarial.shape


def test_register_refuses_incomplete_entries():
    class NoMethod(Defence):
        name, label = "no-method", "No method"

    class NoName(Defence):
        label = "Nameless"

        def restore_pixels(self, model, x, params, target, reference) -> Restored:
            return Restored(x)

    with pytest.raises(InputError, match="restore_pixels"):
        register_defence(NoMethod())
    with pytest.raises(InputError, match="name and a label"):
        register_defence(NoName())
    with pytest.raises(InputError, match="already registered"):
        register_defence(Identity())
    with pytest.raises(InputError, match="Defence instance"):
        register_defence("pssr")  # type: ignore[arg-type]


def test_unavailable_says_why_and_a_direct_call_raises_the_same_words(digits_cnn):
    from neuronviz.core.models import wrap_model

    assert all(d.unavailable(digits_cnn) is None for d in list_defences())
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.LazyLinear(5))
    net(torch.zeros(1, 3, 16, 16))
    other = wrap_model(net, [0.5] * 3, [0.25] * 3, (16, 16), tuple(f"c{i}" for i in range(5)))
    reactive = get_defence("nip-reactive")
    reason = reactive.unavailable(other)
    assert reason is not None and "embedded digits models" in reason and "your labelled evaluation images" in reason.lower()
    assert [d.name for d in list_defences() if d.unavailable(other) is not None] == ["nip-reactive"]
    with pytest.raises(InputError, match="embedded digits models"):
        reactive.restore_for(other, torch.rand(1, 3, 16, 16), benign=None)
