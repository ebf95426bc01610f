"""Defences: contracts, NIP's objective, PSSR's masks, the identity, the shared model, the table."""

import pytest
import torch

from neuronviz.core.probe import hook_count
from neuronviz.infra.errors import InputError
from neuronviz.methods.attacks import run_attack
from neuronviz.methods.defences import get_defence, list_defences, restore
from neuronviz.methods.defences.nip import nip_step_direction
from neuronviz.methods.defences.pssr import inpaint, load_regenerator, salient_mask
from neuronviz.workflows.defence_table import defence_table


@pytest.fixture(scope="module")
def attacked(digits_cnn, digits_test):
    x, y = digits_test[0][:24], digits_test[1][:24]
    report = run_attack(digits_cnn, x, "pgd", {"steps": 20}, labels=y, seed=0)
    return x, y, report


def _hooks(model):
    return hook_count(model)


def _kwargs(name, benign, x):
    defense = get_defence(name)
    return {"target": benign if defense.needs_target else None, "reference": x if defense.needs_reference else None}


def test_registry_names_every_mode_and_marks_reconstructions():
    names = [d.name for d in list_defences()]
    assert names[0] == "none" and {"nip-oracle", "nip-guided", "nip-reactive", "pssr"} <= set(names)
    for defense in list_defences():
        assert defense.label and defense.description and defense.paper
        if defense.name != "none":
            assert defense.reconstruction  # what is reconstructed is said, even when it is "None"
    assert get_defence("nip-oracle").needs_reference and get_defence("nip-guided").needs_target
    assert not get_defence("nip-reactive").needs_target and not get_defence("pssr").needs_reference


@pytest.mark.parametrize("name", ["none", "nip-oracle", "nip-guided", "nip-reactive", "pssr"])
def test_contract(name, digits_cnn, attacked):
    x, _, report = attacked
    adv = report.adversarial[:8]
    state = {k: v.clone() for k, v in digits_cnn.state_dict().items()}
    hooks = _hooks(digits_cnn)
    result = restore(digits_cnn, adv, name, **_kwargs(name, report.clean_pred[:8], x[:8]))
    assert result.restored.shape == adv.shape and float(result.restored.min()) >= 0 and float(result.restored.max()) <= 1
    with torch.no_grad():
        assert torch.equal(digits_cnn(result.restored).argmax(1), result.prediction)
    assert torch.allclose(result.probs.sum(1), torch.ones(8), atol=1e-5)
    assert all(torch.equal(v, state[k]) for k, v in digits_cnn.state_dict().items())
    assert _hooks(digits_cnn) == hooks and not digits_cnn.training
    assert all(p.grad is None for p in digits_cnn.parameters())
    assert result.seconds > 0 and result.to_dict()["defense"] == name


def test_identity_changes_nothing(digits_cnn, attacked):
    adv = attacked[2].adversarial
    result = restore(digits_cnn, adv, "none")
    assert torch.equal(result.restored, adv) and torch.equal(result.prediction, attacked[2].adv_pred)


def test_nip_objective_increases_over_its_steps(digits_cnn, attacked):
    _, _, report = attacked
    result = restore(digits_cnn, report.adversarial, "nip-guided", {"steps": 6}, target=report.clean_pred)
    objective = result.trace["objective"]
    assert objective.shape[1] == 24 and objective.shape[0] >= 2
    # a step of gradient ascent raises L = Σfront − Σtail at the first step for (almost) every image
    moved = objective[1] - objective[0]
    assert float((moved > 0).float().mean()) >= 0.9
    direction, _, _ = nip_step_direction(digits_cnn, report.adversarial, report.clean_pred, "features.7", 0.2, 0.2, "bottom")
    rms = direction.pow(2).flatten(1).mean(1).sqrt()
    assert torch.allclose(rms, torch.ones(24), atol=1e-3)  # RMS-normalised, as in the authors' code


def test_guided_restores_pgd_and_leaves_clean_images(digits_cnn, attacked):
    x, _, report = attacked
    fooled = report.success
    result = restore(digits_cnn, report.adversarial, "nip-guided", target=report.clean_pred)
    assert float((result.prediction[fooled] == report.clean_pred[fooled]).float().mean()) >= 0.9
    clean = restore(digits_cnn, x, "nip-guided", target=report.clean_pred)
    assert torch.equal(clean.restored, x)  # already at the named class: nothing moves


def test_oracle_uses_the_benign_sign(digits_cnn, attacked):
    x, _, report = attacked
    result = restore(digits_cnn, report.adversarial, "nip-oracle", reference=x)
    sign = result.trace["sign"][0]
    assert set(sign.tolist()) <= {1.0, -1.0}
    with pytest.raises(InputError, match="needs the benign image"):
        restore(digits_cnn, report.adversarial, "nip-oracle")
    with pytest.raises(InputError, match="give target="):
        restore(digits_cnn, report.adversarial, "nip-guided")


def test_reactive_uses_no_label_and_says_what_it_tried(digits_cnn, attacked):
    _, _, report = attacked
    result = restore(digits_cnn, report.adversarial[:6], "nip-reactive", {"candidates": 3, "steps": 5})
    assert result.trace["candidates"].shape == (3, 6) and result.trace["scores"].shape == (3, 6)
    chosen = result.trace["chosen"][0]
    assert chosen.min() >= 0 and chosen.max() < 3
    rgb = __import__("neuronviz.core.models", fromlist=["load_model"]).load_model("resnet18", weights=None, device="cpu")
    with pytest.raises(InputError, match="class influence profiles"):
        restore(rgb, torch.rand(1, 3, 64, 64), "nip-reactive")


def test_pssr_masks_have_the_stated_fraction_and_threshold(digits_cnn, attacked):
    adv = attacked[2].adversarial
    score, mask = salient_mask(digits_cnn, adv, alpha=2.0)
    threshold = 2.0 * score.flatten(1).mean(1).view(-1, 1, 1, 1)
    assert torch.equal(mask.bool(), score >= threshold)
    result = restore(digits_cnn, adv, "pssr", {"alpha": 2.0, "use_regenerator": False})
    fraction = result.trace["salient_fraction"][0]
    assert torch.allclose(fraction, result.extras["mask"].flatten(1).mean(1))
    assert torch.equal(result.extras["surgery"], adv * (1 - result.extras["mask"][:, None]))
    assert "Fallback" in result.notes[0]
    wider = restore(digits_cnn, adv, "pssr", {"alpha": 1.0, "use_regenerator": False}).trace["salient_fraction"][0]
    assert (wider >= fraction).all()  # a lower threshold removes more pixels


def test_inpainting_fills_only_the_removed_pixels():
    image = torch.full((1, 1, 6, 6), 0.5)
    mask = torch.zeros(1, 1, 6, 6)
    mask[0, 0, 2:4, 2:4] = 1
    filled = inpaint(image * (1 - mask), mask)
    assert torch.allclose(filled, image, atol=1e-6)  # a flat image is restored exactly
    assert torch.equal(filled[mask == 0], image[mask == 0])


def test_regenerator_is_used_only_for_the_weights_it_was_trained_for(digits_cnn):
    other = digits_cnn.copy()
    with torch.no_grad():
        other.net.classifier[2].bias += 0.01
    other.__dict__.pop("content_hash", None)
    assert load_regenerator(other) is None  # another classifier: the fallback, never a mismatched G


def test_errors(digits_cnn, attacked):
    adv = attacked[2].adversarial
    with pytest.raises(InputError, match="unknown defence"):
        restore(digits_cnn, adv, "jpeg2000")  # "jpeg" is a registered baseline now
    with pytest.raises(InputError, match=r"'step' = 2 .*out of range"):
        restore(digits_cnn, adv, "nip-guided", {"step": 2.0}, target=0)
    with pytest.raises(InputError, match="no layer 'features.99'"):
        restore(digits_cnn, adv, "nip-guided", {"layer": "features.99"}, target=0)
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        restore(digits_cnn, adv * 2, "pssr")


def test_defence_table(digits_cnn, digits_test):
    x, y = digits_test[0][:12], digits_test[1][:12]
    table = defence_table(digits_cnn, x, y, ["fgsm", ("pgd", {"steps": 5})], ["none", "nip-guided", "pssr"], batch_size=8)
    assert len(table) == 6 and set(table["defence"]) == {"none", "nip-guided", "pssr"}
    none = table[table["defence"] == "none"].set_index("attack")
    assert (none["dsr"] == 0).all()  # no defence restores nothing
    clean_acc = float((digits_cnn.predict(x)[0] == y).float().mean())
    assert none["accuracy_clean"].eq(clean_acc).all()
    guided = table[table["defence"] == "nip-guided"].iloc[0]
    assert not guided["deployable"] and guided["dsr"] > 0.8
    assert table[table["defence"] == "pssr"]["deployable"].all()


def test_adaptive_attacker_goes_through_pssr(digits_cnn, digits_test):
    from neuronviz.methods.defences.pssr import defended_model

    x, y = digits_test[0][:12], digits_test[1][:12]
    through = defended_model(digits_cnn)
    assert through.meta.name == "pssr+digits-cnn"
    xg = x.clone().requires_grad_(True)
    logits = through(xg)
    (grad,) = torch.autograd.grad(logits.max(1).values.sum(), xg)
    assert float(grad.abs().sum()) > 0  # BPDA: gradients reach the input through the regenerator
    with torch.no_grad():  # the wrapper is exactly "restore with pssr, then classify"
        assert torch.equal(through(x).argmax(1), restore(digits_cnn, x, "pssr").prediction)
    table = defence_table(digits_cnn, x, y, [("pgd", {"steps": 10})], ["pssr"], adaptive=True)
    plain = table[~table["adaptive"]].iloc[0]
    adaptive = table[table["adaptive"]].iloc[0]
    assert adaptive["attack"] == "pgd (adaptive, BPDA through pssr)"
    assert adaptive["accuracy_adversarial"] < plain["accuracy_adversarial"]  # knowing the defence helps the attacker


@pytest.mark.parametrize("name", list(__import__("neuronviz.core.models", fromlist=["EMBEDDED"]).EMBEDDED))
def test_each_embedded_model_has_its_regenerator_and_card(name, digits_test):
    import hashlib
    import json

    from neuronviz.core.models import load_model
    from neuronviz.methods.defences.pssr import regenerator_path

    model = load_model(name, device="cpu")
    path = regenerator_path(name)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["classifier_content_hash"] == model.content_hash  # bound to these very weights
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["weights_sha256"]
    assert path.stat().st_size < 1_000_000 and card["command"] == f"python -m neuronviz train pssr-{name}"
    x, y = digits_test
    clean = restore(model, x, "pssr")
    assert "Regenerator trained for this model" in clean.notes[0]
    measured = float((clean.prediction == y).float().mean())
    assert measured == pytest.approx(card["metrics"]["clean"], abs=1e-3)  # re-measured, not read


def test_pssr_meets_its_targets_on_digits_cnn(digits_cnn, digits_test):
    """Issue targets on the test split at eps 0.1: clean >= 95%, PGD-20 >= 88%, FGSM >= 85%."""
    x, y = digits_test
    clean = restore(digits_cnn, x, "pssr")
    assert float((clean.prediction == y).float().mean()) >= 0.95
    for attack, params, bar in (("pgd", {"eps": 0.1, "alpha": 0.01, "steps": 20}, 0.88), ("fgsm", {"eps": 0.1}, 0.85)):
        adversarial = run_attack(digits_cnn, x, attack, params, labels=y, seed=0).adversarial
        restored = restore(digits_cnn, adversarial, "pssr")
        assert float((restored.prediction == y).float().mean()) >= bar, attack
