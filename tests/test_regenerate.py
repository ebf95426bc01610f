"""PSSR for any model (train on the user's data, cached by content hashes, picked up), reactive NIP's
class profiles from the user's data, and the fallback / borrowed data named in every output."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from torch import nn

from neuronviz.core.models import wrap_model
from neuronviz.infra import budget
from neuronviz.infra.errors import CancelledError, InputError
from neuronviz.methods.defences import get_defense, restore
from neuronviz.methods.defences import nip as nip_module
from neuronviz.methods.defences.pssr import cached_path, companion_key, find_regenerator, user_cache_dir
from neuronviz.training.pssr import plan, split_indices, train_for_data
from neuronviz.workflows.evaluate import Dataset, evaluate

SIZE = 12


def _tiny_model(seed: int = 0, classes: int = 3, channels: int = 1, size: int = SIZE):
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * size * size, classes),
    )
    return wrap_model(net.eval(), [0.5] * channels, [0.25] * channels, (size, size), tuple(f"c{i}" for i in range(classes)),
                      name=f"tiny-{seed}")


def _data(n: int = 20, classes: int = 3, channels: int = 1, size: int = SIZE, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.rand(n, channels, size, size, generator=g)
    return Dataset(spec=f"test:{seed}", images=images, labels=labels, ids=tuple(f"img-{i}" for i in range(n)),
                   description=f"{n} random test images")


@pytest.fixture
def pssr_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONVIZ_PSSR_DIR", str(tmp_path / "pssr"))
    return tmp_path / "pssr"


def test_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NEURONVIZ_PSSR_DIR", str(tmp_path / "here"))
    assert user_cache_dir() == tmp_path / "here"
    monkeypatch.delenv("NEURONVIZ_PSSR_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert user_cache_dir() == tmp_path / "xdg" / "neuronviz" / "pssr"


def test_split_is_seeded_disjoint_and_checked():
    train, held = split_indices(50, 0.2, seed=3)
    assert len(held) == 10 and len(train) == 40
    assert set(train.tolist()).isdisjoint(held.tolist()) and set(train.tolist()) | set(held.tolist()) == set(range(50))
    assert torch.equal(split_indices(50, 0.2, seed=3)[1], held)
    with pytest.raises(InputError, match="at least 10"):
        split_indices(5, 0.2, 0)
    with pytest.raises(InputError, match="held-out share"):
        split_indices(50, 1.0, 0)


def test_a_trained_regenerator_is_found_by_content_hash_and_named(pssr_dir):
    model, data = _tiny_model(0), _data()
    x = data.images[:4]
    before = restore(model, x, "pssr")
    assert before.variant == "inpainting fallback" and before.method_label == "PSSR (inpainting fallback)"
    assert before.method == {"regenerator": "none", "regenerator_reason": "none trained for this model's weights"}
    assert companion_key(model)[0] is None

    steps: list[float] = []
    card = train_for_data(model, data, epochs=1, progress=lambda f, m: steps.append(f))
    path = cached_path(model.content_hash, data.digest)
    assert path.is_file() and path.with_suffix(".json").is_file() and path.parent == pssr_dir
    assert card["classifier_content_hash"] == model.content_hash and card["data"]["sha256"] == data.digest
    assert card["data"]["train_images"] == 16 and card["data"]["held_out_images"] == 4
    assert steps[0] == 0.0 and steps[-1] == 1.0 and steps == sorted(steps)
    held = card["held_out"]
    assert held["images"] == 4
    for key in ("clean", "fgsm", "pgd20"):
        for column in ("accuracy_undefended", "accuracy_regenerator", "accuracy_fallback"):
            assert held[key][column]["n"] == 4 and 0.0 <= held[key][column]["low"] <= held[key][column]["high"] <= 1.0
    assert held["fgsm"]["dsr_regenerator"]["n"] == held["fgsm"]["dsr_fallback"]["n"]

    after = restore(model, x, "pssr")
    assert after.variant == "" and after.method_label == "PSSR"
    assert after.method["regenerator"]["sha256"] == card["weights_sha256"]
    assert after.method["regenerator"]["data"]["sha256"] == data.digest
    assert not torch.equal(after.restored, before.restored)
    assert companion_key(model)[0] == card["weights_sha256"]  # caches keyed on the model see the change
    # turned off: the fallback again, and said so
    off = restore(model, x, "pssr", {"use_regenerator": False})
    assert off.method_label == "PSSR (inpainting fallback)" and "turned off" in off.method["regenerator_reason"]
    # another classifier (other weights) never gets this regenerator
    other = _tiny_model(1)
    assert find_regenerator(other) is None and restore(other, x, "pssr").variant == "inpainting fallback"


def test_a_tampered_regenerator_file_is_refused(pssr_dir):
    from neuronviz.infra.errors import CheckpointError

    model, data = _tiny_model(2), _data(seed=2)
    train_for_data(model, data, epochs=1)
    path = cached_path(model.content_hash, data.digest)
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="SHA-256"):
        restore(model, data.images[:2], "pssr")


def test_training_stops_on_cancel_and_writes_nothing(pssr_dir):
    model, data = _tiny_model(3), _data(seed=3)
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError), budget.limit(cancel=stop):
        train_for_data(model, data, epochs=1)
    assert not cached_path(model.content_hash, data.digest).exists()


def test_plan_bounds_the_pool_before_any_work(pssr_dir):
    model = _tiny_model(4, channels=3, size=64)
    data = _data(n=12, channels=3, size=64)
    the_plan = plan(model, data, epochs=2)
    assert the_plan.train_images == 10 and the_plan.pairs == 40 and the_plan.estimate_s > 0
    assert "10 training images" in the_plan.describe() and "estimated" in the_plan.describe()
    from neuronviz.training import pssr as training

    original = training.MAX_POOL_BYTES
    training.MAX_POOL_BYTES = 1000
    try:
        with pytest.raises(InputError, match="for the pool"):
            plan(model, data)
    finally:
        training.MAX_POOL_BYTES = original
    with pytest.raises(InputError, match="epochs"):
        plan(model, data, epochs=0)


def test_evaluate_names_the_fallback_in_table_csv_json_and_provenance(pssr_dir, tmp_path):
    model, data = _tiny_model(5), _data(n=16, seed=5)
    result = evaluate(model, data, ["fgsm:eps=0.1"], defences=["none", "pssr"], out=tmp_path / "ev", progress=False)
    row = [r for r in result.rows if r["variant"] or r["defence"].startswith("PSSR")][0]
    assert row["defence"] == "PSSR (inpainting fallback)" and row["variant"] == "inpainting fallback"
    markdown = (tmp_path / "ev" / "results.md").read_text()
    assert "| PSSR (inpainting fallback) | inpainting fallback | yes |" in markdown
    assert "| PSSR |" not in markdown
    assert "PSSR (inpainting fallback)" in (tmp_path / "ev" / "results.csv").read_text()
    saved = json.loads((tmp_path / "ev" / "results.json").read_text())
    pssr_record = [d for d in saved["provenance"]["defences"] if d["defence"] == "pssr"][0]
    assert pssr_record["regenerator"] == "none" and pssr_record["label"] == "PSSR (inpainting fallback)"
    # with a regenerator: the plain label, its hash in the provenance; the old folder is refused (other plan)
    card = train_for_data(model, _data(n=20, seed=6), epochs=1)
    with pytest.raises(InputError, match="different evaluation"):
        evaluate(model, data, ["fgsm:eps=0.1"], defences=["none", "pssr"], out=tmp_path / "ev", progress=False)
    trained = evaluate(model, data, ["fgsm:eps=0.1"], defences=["none", "pssr"], progress=False)
    row = [r for r in trained.rows if r["defence"].startswith("PSSR")][0]
    assert row["defence"] == "PSSR" and row["variant"] == ""
    record = [d for d in trained.provenance["defences"] if d["defence"] == "pssr"][0]
    assert record["regenerator"]["sha256"] == card["weights_sha256"]


def test_batch_results_and_figures_name_the_fallback(pssr_dir):
    from neuronviz.figures.batch import accuracy_figure, per_class_figure
    from neuronviz.workflows.batch import BatchResult, evaluate_chunk

    model, data = _tiny_model(10), _data(n=16, seed=10)
    result = evaluate_chunk(model, data.images, data.labels, "fgsm", {"eps": 0.1}, ["nip-guided", "pssr"], seed=0)
    assert result.method_labels == {"nip-guided": "NIP (guided)", "pssr": "PSSR (inpainting fallback)"}
    assert BatchResult.concat([result, result]).method_labels == result.method_labels
    summary = result.summary()
    assert list(accuracy_figure(summary).data[0].x) == ["no defence", "NIP (guided)", "PSSR (inpainting fallback)"]
    names = {trace.name for trace in per_class_figure(result, model.class_names).data}
    assert "after PSSR (inpainting fallback)" in names


def test_figure_panel_and_decision_rows_name_the_fallback(pssr_dir):
    from types import SimpleNamespace

    from neuronviz.figures.attack import decision_rows
    from neuronviz.figures.compose import panel_title

    model = _tiny_model(7)
    x = torch.rand(1, 1, SIZE, SIZE)
    restored = restore(model, x, "pssr")
    fake = SimpleNamespace(restorations={"pssr": restored}, probabilities=lambda c: restored.probs[0])
    names = list(model.class_names)
    assert panel_title(fake, "pssr", names).startswith("PSSR (inpainting fallback)<br>")
    assert panel_title(fake, "pssr", names, short=True).startswith("PSSR (inpainting fallback)<br>")
    rows = decision_rows(x, x, restored.probs[:1], 0, {"PSSR": restored}, names)
    assert rows[1]["image"] == "PSSR (inpainting fallback)"
    assert restored.to_dict()["method_label"] == "PSSR (inpainting fallback)"


# -- reactive NIP ----------------------------------------------------------------------------------------


def test_reactive_nip_is_unavailable_without_profiles_and_never_borrows_the_digits():
    reactive = get_defense("nip-reactive")
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 28 * 28, 10))
    lookalike = wrap_model(net.eval(), [0.5], [0.25], (28, 28), tuple(str(i) for i in range(10)), name="not-embedded")
    reason = reactive.unavailable(lookalike)  # 1×28×28 and the ten digits, but not an embedded model
    assert reason is not None and "embedded digits models" in reason
    assert reactive.variant_for(lookalike).provenance == {"profiles": "none"}
    with pytest.raises(InputError, match="class influence profiles"):
        restore(lookalike, torch.rand(1, 1, 28, 28), "nip-reactive")


def test_reactive_nip_uses_the_embedded_models_own_training_split(digits_cnn):
    variant = get_defense("nip-reactive").variant_for(digits_cnn)
    assert variant.name == "profiles from the digits training split"
    assert variant.label("NIP (reactive)") == "NIP (reactive; profiles from the digits training split)"
    assert variant.provenance["profiles"]["split"] == "train"


def test_reactive_nip_profiles_from_the_users_data():
    model = _tiny_model(8)
    data = _data(n=18, seed=8)
    reactive = get_defense("nip-reactive")
    assert reactive.unavailable(model) is not None
    try:
        nip_module.use_profile_data(model, data.images, data.labels, "my folder (18 images)")
        assert reactive.unavailable(model) is None
        result = restore(model, data.images[:3], "nip-reactive", {"steps": 2, "candidates": 2})
        assert result.method_label == "NIP (reactive; profiles from your data)"
        assert result.method["profiles"]["source"] == "my folder (18 images)" and result.method["profiles"]["images"] == 18
        assert result.method["profiles"]["classes"] == 3
        # profiles are the class means of the influence toward the true label, on exactly these images
        layer = nip_module.default_layer(model)
        profiles = nip_module._profiles_for(model, layer)
        expected = nip_module.class_profiles(model, data.images, data.labels, layer)
        assert torch.allclose(profiles, expected, equal_nan=True)
        with pytest.raises(InputError, match="two classes"):
            nip_module.use_profile_data(model, data.images[:3], torch.zeros(3, dtype=torch.long), "one class")
    finally:
        nip_module.clear_profile_data(model)
    assert reactive.unavailable(model) is not None


def test_a_class_without_profile_images_never_wins():
    model = _tiny_model(9)
    data = _data(n=12, seed=9)
    keep = data.labels != 2  # no images of class 2
    try:
        nip_module.use_profile_data(model, data.images[keep], data.labels[keep], "two classes")
        result = restore(model, data.images[:4], "nip-reactive", {"steps": 1, "candidates": 3})
        chosen = result.trace["candidates"].T[torch.arange(4), result.trace["chosen"][0]]
        assert not bool((chosen == 2).any())
        assert result.method["profiles"]["classes"] == 2 and result.method["profiles"]["of_classes"] == 3
    finally:
        nip_module.clear_profile_data(model)


def test_cli_train_pssr_needs_its_arguments(capsys):
    from neuronviz.cli import main

    assert main(["train", "pssr", "digits-cnn"]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train", "digits-cnn", "--data", "digits"]) == 2
    assert "train pssr MODEL --data SPEC" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_trains_a_tiny_regenerator_for_a_factory_model(tmp_path, monkeypatch, capsys):
    """`neuronviz train pssr module:function --data digits:...`: trains, reports the held-out numbers,
    and PSSR uses the result for that model (about 20 s here)."""
    (tmp_path / "outside_model.py").write_text(
        "import torch\nfrom torch import nn\nfrom neuronviz.core.models import wrap_model\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1),"
        " nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10))\n"
        "    return wrap_model(net.eval(), [0.2], [0.3], (28, 28), [str(i) for i in range(10)], name='outside')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("NEURONVIZ_PSSR_DIR", str(tmp_path / "pssr"))
    from neuronviz.cli import main

    assert main(["train", "pssr", "outside_model:build", "--data", "digits:split=test", "--limit", "40", "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "held-out images: 8" in out and "PSSR (inpainting fallback)" in out and "written to" in out
    cards = list((tmp_path / "pssr").glob("*.json"))
    assert len(cards) == 1
    card = json.loads(cards[0].read_text())
    assert "outside_model" in card["command"] and card["command"].endswith("--data digits:split=test --limit 40 --epochs 1")
    import outside_model

    model = outside_model.build()
    assert restore(model, torch.rand(1, 1, 28, 28), "pssr").method["regenerator"]["sha256"] == card["weights_sha256"]
