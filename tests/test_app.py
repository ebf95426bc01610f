"""The dashboard under Streamlit's AppTest: default run, widgets driven, bad input survived.

Everything is offline: TORCH_HOME is an empty temporary folder (tests/conftest.py), so zoo
weights are "not cached", and the download button is tested with a download that fails.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `app` is a folder of the repository, not an installed package
    sys.path.insert(0, str(ROOT))

MAIN = str(ROOT / "app" / "main.py")


@pytest.fixture()
def at() -> AppTest:
    """The app on its Model & image page (the pages of the analysis have their own tests)."""
    at = AppTest.from_file(MAIN, default_timeout=120)
    at.run()
    _assert_healthy(at)
    at.switch_page("app_pages/model_image.py").run()
    _assert_healthy(at)
    return at


def _assert_healthy(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; metrics: {[m.label for m in at.metric]}"
    return values[0]


def _banner(at: AppTest) -> str:
    return " ".join(m.value for m in at.main.markdown if "**Model**" in m.value or "**Image**" in m.value)


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def _expected_default_prediction() -> tuple[str, str]:
    """(label of the default sample, the class digits-cnn predicts for it), via the library."""
    from neuronviz.core.models import load_model
    from neuronviz.data.images import list_samples, load_sample

    model = load_model("digits-cnn", device="cpu")
    from app import runs as analysis

    [sample] = [s for s in list_samples(model) if s.id == analysis.DEFAULT_SAMPLE_ID]  # the start-up digit
    predicted, _ = model.predict(load_sample(sample.id, model))
    return sample.label, model.class_names[int(predicted[0])]


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


# -- default run ------------------------------------------------------------------------------------


def test_default_run_shows_digits_cnn_sample_and_prediction(at: AppTest):
    label, predicted = _expected_default_prediction()
    assert _errors(at) == []
    assert "`digits-cnn`" in _banner(at) and label in _banner(at)
    assert _metric(at, "Prediction") == predicted == "7"
    assert _metric(at, "True class") == "7"
    assert _metric(at, "Confidence").endswith("%")
    assert _metric(at, "Clean accuracy") == "98.6%"  # from the model card
    assert len(at.get("plotly_chart")) == 2  # the image and the top-5 bars


def test_pickers_are_built_from_the_registries(at: AppTest):
    from neuronviz.core.models import list_models

    builtin = [m for m in list_models() if m.source in ("embedded", "zoo")]
    assert at.selectbox(key="model_name").options[: len(builtin)] == [
        f"{m.name} · " + ("embedded" if m.kind == "embedded" else "ImageNet, not cached")
        + (" (weights missing)" if m.kind == "embedded" and not m.weights_available else "")
        for m in builtin
    ]
    rest = at.selectbox(key="model_name").options[len(builtin):]  # then timm's curated set, and any timm name
    assert rest[:-1] == [f"{m.name} · not cached" for m in list_models() if m.source == "timm"]
    assert rest[-1] == "timm: another model (type its name)…"
    assert at.selectbox(key="model_name").value == "digits-cnn"
    expected_devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    assert at.selectbox(key="device").value in expected_devices
    assert len(at.selectbox(key="device").options) == len(expected_devices)
    assert at.button_group(key="sample_class").options == [str(i) for i in range(10)]


# -- switching --------------------------------------------------------------------------------------


def test_switching_sample_updates_image_and_prediction(at: AppTest):
    at.button_group(key="sample_class").set_value(7).run()
    _assert_healthy(at)
    assert "digit 7" in _banner(at)
    assert _metric(at, "True class") == "7"
    assert _metric(at, "Prediction") == "7"
    at.button_group(key="sample_example").set_value(2).run()
    _assert_healthy(at)
    assert "digit 7" in _banner(at) and _errors(at) == []


def test_switching_model_updates_banner_and_card(at: AppTest):
    at.selectbox(key="model_name").set_value("digits-resnet").run()
    _assert_healthy(at)
    assert "`digits-resnet`" in _banner(at)
    assert _metric(at, "Prediction") == "7"
    assert _metric(at, "Parameters") != "28,362"  # the ResNet's card, not the CNN's


def test_zoo_model_without_cached_weights_offers_random_init(at: AppTest):
    at.selectbox(key="model_name").set_value("resnet18").run()
    _assert_healthy(at)
    assert any("not cached" in w.value for w in at.sidebar.warning)
    assert at.radio(key="weights:resnet18").value == "random initialisation"
    assert "`resnet18`" in _banner(at) and "random initialisation" in _banner(at)
    assert "Chelsea the cat" in _banner(at)  # photos for a 3-channel model
    assert _metric(at, "True class") == "tabby"
    assert _metric(at, "Prediction")  # a (meaningless) ImageNet class
    assert any("meaningless" in w.value for w in at.main.warning)
    assert _errors(at) == []

    # Asking for the pretrained weights that are not there: an error, the random model stays.
    at.radio(key="weights:resnet18").set_value("pretrained").run()
    _assert_healthy(at)
    assert any("not in the local cache" in e for e in _errors(at))
    assert "random initialisation" in _banner(at)


def test_download_failure_is_shown_cleanly(at: AppTest, monkeypatch):
    from urllib.error import URLError

    import torch

    def offline(url, dst, hash_prefix=None, progress=True):
        raise URLError("[Errno -2] Name or service not known")

    # the library's real download path, with torch's fetch replaced: never touch the network in tests
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    at.selectbox(key="model_name").set_value("resnet18").run()
    at.button(key="download:resnet18").click().run()
    _assert_healthy(at)
    messages = [e.value for e in at.sidebar.error]
    assert any("Could not download the weights of resnet18" in m and "Name or service" in m for m in messages)
    assert "`resnet18`" in _banner(at)


def test_download_success_switches_to_pretrained(at: AppTest, monkeypatch, tmp_path):
    from neuronviz.core.models import torchvision_zoo

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # a private hub cache for this test

    def fake_download(name):  # stands in for the network: a valid resnet18 state dict
        path = torchvision_zoo.cached_weights_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(torchvision_zoo.build_network(name).state_dict(), path)
        return path

    monkeypatch.setattr(torchvision_zoo, "download_weights", fake_download)
    at.selectbox(key="model_name").set_value("resnet18").run()
    assert at.radio(key="weights:resnet18").value == "random initialisation"
    at.button(key="download:resnet18").click().run()
    _assert_healthy(at)
    assert any("Weights of resnet18 downloaded" in s.value for s in at.sidebar.success)
    assert at.radio(key="weights:resnet18").value == "pretrained"
    assert "`resnet18` · pretrained weights" in _banner(at)
    assert not at.sidebar.warning  # no longer "not cached"
    assert _errors(at) == []


# -- bad input never kills the session --------------------------------------------------------------


def test_bad_image_upload_shows_error_and_keeps_previous_image(at: AppTest):
    at.button_group(key="sample_class").set_value(3).run()
    before = _banner(at)
    at.button_group(key="image_source").set_value("Upload").run()
    assert _banner(at) == before  # nothing uploaded yet: the sample stays
    at.file_uploader(key="image_upload").upload("broken.png", b"this is not a png", "image/png").run()
    _assert_healthy(at)
    errors = _errors(at)
    assert len(errors) == 1 and "broken.png" in errors[0] and "not an image" in errors[0]
    assert "Still showing digit 3" in errors[0]
    assert _banner(at) == before
    assert _metric(at, "True class") == "3"


def test_good_image_upload_is_used(at: AppTest):
    digit = torch.zeros(40, 40, dtype=torch.uint8)
    digit[8:32, 18:23] = 255  # a white "1" on black
    at.button_group(key="image_source").set_value("Upload").run()
    at.file_uploader(key="image_upload").upload("one.png", _png(digit.numpy()), "image/png").run()
    _assert_healthy(at)
    assert _errors(at) == []
    assert "one.png (uploaded)" in _banner(at)
    assert _metric(at, "True class") == "unknown"
    assert len(at.get("plotly_chart")) == 2


def test_bad_checkpoint_shows_error_and_keeps_previous_model(at: AppTest):
    at.button_group(key="model_source").set_value("Your checkpoint").run()
    assert "`digits-cnn`" in _banner(at)  # nothing uploaded yet
    at.file_uploader(key="checkpoint_upload").upload("broken.pt", b"garbage bytes", "application/octet-stream")
    at.run()
    _assert_healthy(at)
    errors = _errors(at)
    assert len(errors) == 1 and "broken.pt" in errors[0] and "Still showing digits-cnn" in errors[0]
    assert "`digits-cnn`" in _banner(at)
    assert _metric(at, "Prediction") == "7"


def test_checkpoint_upload_for_a_registered_architecture(at: AppTest):
    data = (ROOT / "assets" / "models" / "digits-resnet.safetensors").read_bytes()
    at.button_group(key="model_source").set_value("Your checkpoint").run()
    at.file_uploader(key="checkpoint_upload").upload("my-resnet.safetensors", data, "application/octet-stream")
    at.run()
    _assert_healthy(at)
    assert _errors(at) == []
    assert "`my-resnet`" in _banner(at) and "uploaded checkpoint" in _banner(at)
    assert _metric(at, "Prediction") == "7"

    # The wrong architecture named explicitly: the library's CheckpointError, the upload stays.
    at.selectbox(key="checkpoint_architecture").set_value("digits-cnn").run()
    _assert_healthy(at)
    assert any("digits-cnn" in e and "Still showing my-resnet.safetensors" in e for e in _errors(at))
    assert "`my-resnet`" in _banner(at)


# -- other pages ------------------------------------------------------------------------------------


def test_about_page_lists_the_embedded_model_cards(at: AppTest):
    at.switch_page("app_pages/about.py").run()
    _assert_healthy(at)
    embedded = at.table[0].value  # a static table: the descriptions wrap at 1280 px
    assert list(embedded["model"]) == ["digits-cnn", "digits-resnet", "digits-cnn-robust", "digits-cnn-sns", "digits-vit"]
    assert embedded.loc[embedded["model"] == "digits-cnn", "Clean accuracy"].item() == "98.6%"
    assert embedded.loc[embedded["model"] == "digits-cnn-sns", "Training"].item() == "SNS"
    robustness = at.dataframe[0].value
    assert {"attack", "digits-cnn", "digits-cnn-robust"} <= set(robustness.columns)
    zoo = at.table[1].value
    assert "resnet18" in list(zoo["model"]) and set(zoo["pretrained weights"]) == {"not cached"}


def test_missing_embedded_weights_show_an_error_not_a_crash(monkeypatch, tmp_path):
    monkeypatch.setenv("NEURONVIZ_ASSETS", str(tmp_path))  # an assets folder without models
    at = AppTest.from_file(MAIN, default_timeout=120).run()
    _assert_healthy(at)
    at.switch_page("app_pages/model_image.py").run()
    _assert_healthy(at)
    errors = _errors(at)
    assert len(errors) == 1 and "embedded weights of digits-cnn are missing" in errors[0]
    assert any("No model or image is loaded" in i.value for i in at.info)
    assert not at.metric  # nothing to predict with

    # The zoo still works offline with random initialisation; with no sample photos in this
    # assets folder, an uploaded image is what it shows.
    at.selectbox(key="model_name").set_value("resnet18").run()
    _assert_healthy(at)
    assert any("no sample images" in c.value for c in at.sidebar.caption)
    at.button_group(key="image_source").set_value("Upload").run()
    at.file_uploader(key="image_upload").upload("grey.png", _png(torch.full((30, 40, 3), 128, dtype=torch.uint8).numpy()))
    at.run()
    _assert_healthy(at)
    assert "`resnet18`" in _banner(at) and "grey.png (uploaded)" in _banner(at)
    assert _errors(at) == []


# -- the attack form --------------------------------------------------------------------------------


def _attack_banner(at: AppTest) -> str:
    return " ".join(m.value for m in at.main.markdown if "**Attack**" in m.value)


def test_attack_form_defaults_and_submission(at: AppTest):
    from neuronviz.methods.attacks import list_attacks

    assert at.selectbox(key="attack_name").options == [a.label for a in list_attacks()]
    assert "PGD (L∞)" in _attack_banner(at) and "steps 10" in _attack_banner(at) and "eps 0.1 (25.5/255)" in _attack_banner(at)
    # A change inside the form launches nothing until "Run attack" is pressed.
    [steps] = [w for w in at.sidebar.number_input if w.label == "steps"]
    steps.set_value(7).run()
    assert "steps 10" in _attack_banner(at)
    # (AppTest, like a browser, sends form values only with the submit: set it again and press.)
    [steps] = [w for w in at.sidebar.number_input if w.label == "steps"]
    steps.set_value(7)
    [run] = [b for b in at.sidebar.button if b.label == "Run attack"]
    run.click().run()
    _assert_healthy(at)
    assert "steps 7" in _attack_banner(at)

    # Another attack with a target class.
    at.selectbox(key="attack_name").set_value("fgsm").run()
    assert "PGD" in _attack_banner(at)  # not submitted yet
    [target] = [s for s in at.sidebar.selectbox if s.label == "Target class"]
    target.set_value(3)
    [run] = [b for b in at.sidebar.button if b.label == "Run attack"]
    run.click().run()
    _assert_healthy(at)
    assert "FGSM · eps 0.1 (25.5/255) · target 3 · seed 0" in _attack_banner(at)


def test_invalid_attack_parameters_keep_the_previous_choice(at: AppTest):
    at.selectbox(key="attack_name").set_value("tifgsm").run()
    [kernel] = [w for w in at.sidebar.number_input if w.label == "len kernel"]
    kernel.set_value(4)  # in range, but the kernel must be odd
    [run] = [b for b in at.sidebar.button if b.label == "Run attack"]
    run.click().run()
    _assert_healthy(at)
    errors = _errors(at)
    assert len(errors) == 1 and "must be odd" in errors[0] and "Still using PGD (L∞)" in errors[0]
    assert "PGD (L∞)" in _attack_banner(at)
    assert _metric(at, "Prediction") == "7"  # the rest of the page is there


def test_cuda_out_of_memory_is_a_message_and_the_session_goes_on(monkeypatch):
    """A computation that runs out of GPU memory: a message on the page, the sidebar and the
    banner stay, and the next request works again."""
    import neuronviz.workflows.analysis as analysis  # where compute_analysis calls run_attack

    real = analysis.run_attack
    calls = {"n": 0}

    def out_of_memory(*args, **kwargs):
        calls["n"] += 1
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(analysis, "run_attack", out_of_memory)
    at = AppTest.from_file(MAIN, default_timeout=120).run()  # the Attack page
    _assert_healthy(at)
    assert calls["n"] == 1
    assert any("GPU ran out of memory" in e and "your other choices are kept" in e for e in _errors(at))
    assert "`digits-cnn`" in _banner(at)
    assert [b.label for b in at.sidebar.button] == ["Run attack"]

    monkeypatch.setattr(analysis, "run_attack", real)
    at.run()
    _assert_healthy(at)
    assert _errors(at) == []
    assert len(at.get("plotly_chart")) >= 9  # the five panels and their bars are back


def test_attack_widgets_follow_the_choice_of_each_kind_of_model(at: AppTest):
    """The attack choice is kept per input channel count: switching from digits to photos shows
    that kind's choice in the widgets, and switching back restores the digits' one."""
    at.selectbox(key="attack_name").set_value("fgsm").run()
    [seed] = [w for w in at.sidebar.number_input if w.label == "Seed"]
    seed.set_value(5)
    [run] = [b for b in at.sidebar.button if b.label == "Run attack"]
    run.click().run()
    assert "FGSM" in _attack_banner(at) and "seed 5" in _attack_banner(at)
    at.selectbox(key="model_name").set_value("resnet18").run()  # 3 channels: its own (default) choice
    _assert_healthy(at)
    assert "PGD (L∞)" in _attack_banner(at) and "seed 0" in _attack_banner(at)
    assert at.selectbox(key="attack_name").value == "pgd"
    assert [w.value for w in at.sidebar.number_input if w.label == "Seed"] == [0]
    at.selectbox(key="model_name").set_value("digits-cnn").run()
    assert "FGSM" in _attack_banner(at) and "seed 5" in _attack_banner(at)
    assert at.selectbox(key="attack_name").value == "fgsm"
    assert [w.value for w in at.sidebar.number_input if w.label == "Seed"] == [5]
