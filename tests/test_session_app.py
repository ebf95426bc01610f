"""app/url_state.py under AppTest: a link (``at.query_params`` set before the first run) opens the
analysis it names, with one message per value it could not use; the state goes back into the URL
(only what differs from the defaults); "Open session" applies a session file and the uploads it
names; ``figure --session`` draws the Figure page's numbers."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apptest import MAIN, assert_healthy  # noqa: E402

from neuronviz.cli import figure as figure_cli  # noqa: E402
from neuronviz.figures import compose  # noqa: E402
from neuronviz.workflows.session_record import SessionRecord  # noqa: E402

LINK = {"image": "digit-test-7", "attack": "fgsm", "eps": "0.2", "seed": "5", "neurons.layer": "features.3",
        "figure.charts": "top5,eps-sweep,filters", "figure.width_preset": "single", "group_fraction": "0.3"}


def _open(query: dict[str, str]) -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=240)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert_healthy(at)
    return at


def _choice(at: AppTest):
    return at.session_state["analysis.attack_choice.1"]


def test_a_link_opens_its_analysis_and_reports_what_it_could_not_use():
    at = _open({**LINK, "bogus": "1", "figure.font": "99", "target": "12"})
    warnings = [w.value for w in at.warning]
    assert any("'bogus' is not known here" in w for w in warnings)
    assert any("figure.font='99'" in w and "using 8 instead" in w for w in warnings)
    assert any("target=12" in w and "classes 0..9" in w and "Using untargeted" in w for w in warnings)
    assert len(warnings) == 3
    choice = _choice(at)
    assert (choice.attack, dict(choice.overrides), choice.seed, choice.target) == ("fgsm", {"eps": 0.2}, 5, None)
    assert at.sidebar.selectbox(key="attack_name").value == "fgsm"
    assert [n.value for n in at.sidebar.number_input] == [0.2, 5]  # ε and seed, as the form shows them
    selection = at.session_state["state.selection"]
    assert selection.image_request.sample_id == "digit-test-7"  # the digit picker shows it: its class and example
    assert at.sidebar.button_group(key="sample_class").value == selection.true_class
    # Written back: the link's valid values, nothing at its default, nothing invalid.
    assert dict(at.query_params) == LINK
    at.switch_page("app_pages/neurons.py").run()
    assert_healthy(at)
    assert at.selectbox(key="neurons.layer").value == "features.3"
    assert dict(at.query_params) == LINK


def _png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, size=(40, 40)).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_open_session_applies_the_file_and_asks_for_the_upload_it_names():
    import hashlib

    at = _open({})
    assert dict(at.query_params) == {}  # the defaults: a short (empty) link
    png = _png(3)
    digest = hashlib.sha256(png).hexdigest()
    record = SessionRecord(image="mine.png", image_sha256=digest, true_class=4, attack="fgsm", params={"eps": 0.15}, seed=9,
                           page={"neurons.tail_rule": "next"})
    uploader = at.sidebar.file_uploader(key="session.open")
    uploader.set_value([("s.json", record.to_json().encode(), "application/json")]).run()
    assert_healthy(at)
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert f"uses the image mine.png (sha256 {digest})" in captions and "supply that file" in captions
    choice = _choice(at)
    assert (choice.attack, dict(choice.overrides), choice.seed) == ("fgsm", {"eps": 0.15}, 9)  # the rest is kept
    assert at.session_state["neurons.tail_rule"] == "next"
    # The same file with the image it names: the image is used, by its hash.
    at.sidebar.file_uploader(key="session.open").set_value(
        [("s.json", record.to_json().encode(), "application/json"), ("other-name.png", png, "image/png")]
    ).run()
    assert_healthy(at)
    request = at.session_state["state.selection"].image_request
    assert request.upload is not None and request.upload.digest == digest and request.true_class == 4
    assert at.query_params["image"] == f"sha256:{digest}" and at.query_params["true_class"] == "4"
    # A session naming a checkpoint this server does not have: which file to supply; the rest opens.
    missing = SessionRecord(model="my-net.safetensors", weights="checkpoint", checkpoint_sha256="ef" * 32, seed=11)
    at.sidebar.file_uploader(key="session.open").set_value([("c.json", missing.to_json().encode(), "application/json")]).run()
    assert_healthy(at)
    captions = " ".join(c.value for c in at.sidebar.caption)
    assert f"uses the checkpoint my-net.safetensors (sha256 {'ef' * 32})" in captions and "Using digits-cnn meanwhile" in captions
    assert at.session_state["state.selection"].model.name == "digits-cnn" and _choice(at).seed == 11


def _cli_numbers(path: Path, tmp_path: Path) -> dict:
    parser = argparse.ArgumentParser()
    figure_cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["figure", "--session", str(path), "--out", str(tmp_path / "fig.svg")])
    _, _, _, spec, fig, numbers, _ = figure_cli.build(args)
    assert spec.width_mm == 85.0 and spec.charts == ("top5", "eps-sweep", "filters") and spec.group_size == 0.3
    return numbers


def test_cli_session_draws_the_pages_numbers(tmp_path):
    at = _open(LINK)
    at.switch_page("app_pages/figure.py").run()
    assert_healthy(at)
    [table] = at.dataframe
    page_rows = table.value.to_dict(orient="records")
    path = tmp_path / "session.json"
    path.write_text(at.session_state["session.record"].to_json(), encoding="utf-8")
    rows = compose.numbers_rows(_cli_numbers(path, tmp_path))
    assert any(r["section"] == "eps-sweep" for r in rows) and any(r["section"] == "filters" for r in rows)
    assert len(rows) == len(page_rows)
    for row, want in zip(page_rows, rows):
        assert (row["section"], row["condition"], row["item"], row["metric"]) == (want["section"], want["condition"], want["item"], want["metric"])
        assert float(row["value"]) == pytest.approx(float(want["value"]), rel=1e-6, abs=1e-9)


def test_defence_parameters_travel_in_the_link():
    at = _open({"defence.pssr.alpha": "3.5", "defence.nip-guided.steps": "5", "defence.nip-guided.step": "nan", "defence.jpeg2000.q": "3"})
    warnings = " ".join(w.value for w in at.warning)
    assert "defence.nip-guided.step='nan'" in warnings and "defence.jpeg2000.q names no defence" in warnings
    model = at.session_state["state.selection"].model
    assert at.session_state[f"defences.applied.pssr.{model.content_hash[:12]}"] == {"alpha": 3.5}
    assert at.session_state[f"defences.applied.nip-guided.{model.content_hash[:12]}"] == {"steps": 5}
    assert dict(at.query_params) == {"defence.pssr.alpha": "3.5", "defence.nip-guided.steps": "5"}


def test_a_link_to_a_timm_model_with_random_weights():
    at = AppTest.from_file(MAIN, default_timeout=240)
    at.query_params.update({"model": "timm:vit_tiny_patch16_224", "weights": "random"})
    at.switch_page("app_pages/about.py")  # a page that computes nothing: only the sidebar loads the model
    at.run()
    assert_healthy(at)
    assert not [w.value for w in at.warning if "link" in w.value]
    selection = at.session_state["state.selection"]
    assert selection.model_request.name == "timm:vit_tiny_patch16_224" and selection.model_request.weights is None
    assert at.query_params["model"] == "timm:vit_tiny_patch16_224" and at.query_params["weights"] == "random"
