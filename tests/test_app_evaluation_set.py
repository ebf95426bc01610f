"""The "evaluation images" widget (app/evaluation_set.py) under AppTest: the built-in set, an
image folder, a zip of class folders and labelled uploads, and a class mismatch as a message."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest
from apptest import assert_healthy, errors
from PIL import Image
from streamlit.testing.v1 import AppTest

from neuronviz.data.datasets import digits


def _script():
    import streamlit as st

    from app.evaluation_set import evaluation_images
    from neuronviz.core.models import load_model

    model = st.cache_resource(lambda: load_model("digits-cnn", device="cpu"))()
    chosen = evaluation_images(model, count_key="t.n", keep_key="t.keep", purpose="are measured")
    st.markdown(f"available={chosen.available} n={chosen.n} source={chosen.source}")
    if chosen.images is not None:
        st.markdown(f"description={chosen.images.description}")
        st.markdown(f"labels={chosen.images.labels.tolist()}")


def _png(i: int) -> bytes:
    x, _ = digits("test")
    buffer = io.BytesIO()
    Image.fromarray((x[i, 0].numpy() * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _shown(at) -> dict[str, str]:
    out = {}
    for block in at.markdown:
        for part in block.value.split(" "):
            if "=" in part and part.split("=")[0] in ("available", "n", "source"):
                key, value = part.split("=", 1)
                out[key] = value
        if block.value.startswith(("description=", "labels=")):
            key, value = block.value.split("=", 1)
            out[key] = value
    return out


@pytest.fixture()
def at():
    app = AppTest.from_function(_script, default_timeout=120)
    app.run()
    assert_healthy(app)
    return app


def test_the_builtin_set_by_default(at):
    shown = _shown(at)
    assert shown["available"] == "360" and shown["n"] == "200" and shown["source"] == "builtin"
    assert shown["description"] == "the first 200 of the 360 digits test images (never seen in training)"
    at.number_input(key="t.n").set_value(30).run()
    assert _shown(at)["n"] == "30"


def test_an_image_folder_as_the_evaluation_set(at, tmp_path):
    _, y = digits("test")
    for i in range(12):
        (tmp_path / str(int(y[i]))).mkdir(exist_ok=True)
        (tmp_path / str(int(y[i])) / f"{i}.png").write_bytes(_png(i))
    at.selectbox(key="evaluation.source").set_value("folder").run()
    assert "available" in _shown(at) and _shown(at)["available"] == "0"
    at.text_input(key="evaluation.path").input(str(tmp_path)).run()
    assert_healthy(at)
    shown = _shown(at)
    assert shown["available"] == "12" and shown["n"] == "12" and shown["source"] == "folder"
    assert shown["description"].startswith(f"all 12 images of image folder {tmp_path.name}")
    assert sorted(json.loads(shown["labels"])) == sorted(int(v) for v in y[:12])


def test_a_folder_whose_classes_disagree_says_which(at, tmp_path):
    for name in ("3", "seventeen"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "a.png").write_bytes(_png(0))
    at.selectbox(key="evaluation.source").set_value("folder").run()
    at.text_input(key="evaluation.path").input(str(tmp_path)).run()
    assert_healthy(at)
    [message] = errors(at)
    assert "'seventeen'" in message and "digits-cnn's classes: '0', '1'" in message
    assert _shown(at)["available"] == "0"


def test_a_zip_upload_and_labelled_uploads(at):
    _, y = digits("test")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(6):
            archive.writestr(f"mine/{int(y[i])}/{i}.png", _png(i))
        archive.writestr("../evil/1.png", _png(0))
    at.selectbox(key="evaluation.source").set_value("zip").run()
    at.file_uploader(key="evaluation.zip").upload("evil.zip", buffer.getvalue(), "application/zip").run()
    assert_healthy(at)
    assert any("outside the archive" in e for e in errors(at))

    good = io.BytesIO()
    with zipfile.ZipFile(good, "w") as archive:
        for i in range(6):
            archive.writestr(f"mine/{int(y[i])}/{i}.png", _png(i))
    at.file_uploader(key="evaluation.zip").upload("mine.zip", good.getvalue(), "application/zip").run()
    assert_healthy(at)
    shown = _shown(at)
    assert shown["available"] == "6" and shown["source"] == "zip" and "zip mine.zip" in shown["description"]

    at.selectbox(key="evaluation.source").set_value("uploads").run()
    uploader = at.file_uploader(key="evaluation.uploads")
    uploader.upload("a.png", _png(0), "image/png").upload("b.png", _png(1), "image/png").run()
    assert_healthy(at)
    assert _shown(at)["available"] == "0"  # no class given yet
    boxes = [box for box in at.selectbox if box.label.startswith("True class of")]
    assert [box.label for box in boxes] == ["True class of a.png", "True class of b.png"]
    boxes[0].set_value(int(y[0])).run()
    shown = _shown(at)
    assert shown["available"] == "1" and json.loads(shown["labels"]) == [int(y[0])]
    assert any("1 image without a class is left out" in c.value for c in at.caption)


def test_an_image_folder_is_the_batch_pages_evaluation_set(tmp_path):
    """The issue's check: an ImageFolder of labelled images as the Batch evaluation set; the page's
    numbers and table are the library's on those very images."""
    from apptest import open_page

    from neuronviz.core.models import load_model
    from neuronviz.data.labelled import EvaluationSet
    from neuronviz.workflows import batch

    _, y = digits("test")
    for i in range(10):
        (tmp_path / str(int(y[i]))).mkdir(exist_ok=True)
        (tmp_path / str(int(y[i])) / f"img{i}.png").write_bytes(_png(i))
    at = open_page("app_pages/batch.py")
    at.selectbox(key="evaluation.source").set_value("folder").run()
    at.text_input(key="evaluation.path").input(str(tmp_path)).run()
    assert_healthy(at)
    assert len(at.slider) == 0 and at.number_input(key="batch.n").value == 10  # fewer than 20: a number box
    [button] = [b for b in at.button if b.label == "Run batch"]
    button.click()
    at.run()
    assert_healthy(at)
    assert errors(at) == []

    model = load_model("digits-cnn", device="cpu")
    images = EvaluationSet.from_folder(tmp_path, model)
    expected = batch.evaluate_batch(model, images.images, images.labels, "pgd", {}, seed=0, ids=images.ids)
    frame = at.dataframe[0].value
    assert frame.equals(expected.to_frame(model.class_names))
    assert sorted(frame["image"]) == sorted(f"{int(y[i])}/img{i}.png" for i in range(10))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "10"
    assert metrics["Clean accuracy"] == f"{100 * expected.summary().clean_accuracy:.1f}%"
    assert any(f"all 10 images of image folder {tmp_path.name}" in c.value for c in at.caption)
