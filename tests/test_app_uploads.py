"""Uploads are kept once, by hash, in a process-wide store bounded by bytes (not in the session);
the results memo is bounded by bytes; an upload can be given its true class (issues 11.8, 15.11)."""

from __future__ import annotations

import io
import pickle
import threading

import numpy as np
import pytest
import torch
from apptest import MAIN, assert_healthy
from PIL import Image
from streamlit.testing.v1 import AppTest

from app import runs as analysis
from app import state, store

MODEL_PAGE = "app_pages/model_image.py"


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _one(noise_seed: int = 0) -> bytes:
    """A white "1" on black with some noise (so the PNG is not tiny)."""
    rng = np.random.default_rng(noise_seed)
    digit = rng.integers(0, 30, size=(200, 200)).astype(np.uint8)
    digit[40:160, 90:115] = 255
    return _png(digit)


def _metric(at: AppTest, label: str) -> tuple[str, str | None]:
    [metric] = [m for m in at.metric if m.label == label]
    return metric.value, metric.proto.delta or None


@pytest.fixture()
def at() -> AppTest:
    at = AppTest.from_file(MAIN, default_timeout=240)
    at.switch_page(MODEL_PAGE)
    at.run()
    assert_healthy(at)
    return at


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.button_group(key="image_source").set_value("Upload").run()
    at.file_uploader(key="image_upload").upload(name, data, "image/png").run()
    assert_healthy(at)
    return at


# -- the upload store ------------------------------------------------------------------------------


def test_the_last_good_upload_keeps_no_bytes_in_the_session(at: AppTest):
    data = _one()
    assert len(data) > 20_000
    _upload(at, "one.png", data)
    good = at.session_state[state.GOOD_IMAGE]
    assert good.upload is not None and good.upload.size == len(data)
    assert len(pickle.dumps(good)) < 2_000  # a name and a digest, not the file
    assert store.uploads().get(good.upload.digest) == data  # the bytes are in the store, once


def test_two_sessions_uploading_one_file_hold_it_once():
    data = _one(1)
    sessions = []
    for _ in range(2):
        at = AppTest.from_file(MAIN, default_timeout=240)
        at.switch_page(MODEL_PAGE)
        at.run()
        _upload(at, "same.png", data)
        sessions.append(at)
    assert len(store.uploads()) == 1 and store.uploads().total == len(data)


def test_an_upload_whose_bytes_were_let_go_asks_for_it_again():
    upload = state.Upload(name="gone.png", digest="0" * 64, size=10)
    with pytest.raises(state.UploadExpiredError, match="upload it again"):
        _ = upload.data


def test_byte_lru_is_bounded_by_bytes_and_evicts_the_least_recently_used():
    lru = store.ByteLRU(1000)
    lru.put("a", b"x" * 400, 400)
    lru.put("b", b"y" * 400, 400)
    assert lru.get("a") is not None  # a is now the most recent
    lru.put("c", b"z" * 400, 400)  # over 1000: the least recently used (b) goes
    assert "b" not in lru and "a" in lru and "c" in lru and lru.total == 800
    lru.put("a", b"w" * 100, 100)  # replacing counts the new size only
    assert lru.total == 500
    with pytest.raises(store.TooLarge, match="does not fit"):
        lru.put("huge", b"", 1001)
    assert lru.total == 500


def test_byte_lru_under_concurrent_puts_keeps_its_bound_and_its_count():
    lru = store.ByteLRU(10_000)

    def work(offset: int) -> None:
        for i in range(500):
            lru.put((offset, i), None, 97)
            lru.get((offset, i - 3))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert lru.total <= 10_000 and lru.total == 97 * len(lru)


def test_the_upload_store_refuses_a_file_larger_than_itself(monkeypatch):
    small = store.ByteLRU(1000, "uploaded files")
    monkeypatch.setattr(store, "uploads", lambda: small)

    class File:
        name = "big.png"

        def getvalue(self) -> bytes:
            return b"x" * 2000

    from neuronviz.infra.errors import InputError

    with pytest.raises(InputError, match="big.png is too large"):
        state.Upload.from_file(File())


# -- the results memo ------------------------------------------------------------------------------


def _block(n: int, value: float) -> torch.Tensor:
    return torch.full((n,), value)


def test_the_results_memo_is_bounded_by_bytes(monkeypatch):
    shared = store.ByteLRU(20_000, "results")
    monkeypatch.setattr(store, "results", lambda: shared)
    for i in range(30):
        result = analysis.memo(_block, 1000, float(i))  # 4,000 bytes of float32 each
        assert float(result[0]) == i
    assert shared.total <= 20_000
    assert 4 <= len(shared) <= 5  # ~4 kB pickles: a count set by bytes, not by entries
    # the most recent results are still there (computed once), the oldest are gone
    assert analysis.digest(1000, 29.0) in {key[1] for key in shared._items}
    assert analysis.digest(1000, 0.0) not in {key[1] for key in shared._items}


def test_the_session_copies_are_bounded_by_bytes():
    from collections import OrderedDict

    session: OrderedDict = OrderedDict()
    for i in range(10):
        analysis._keep_in_session(session, ("f", str(i)), None, analysis.SESSION_BYTES // 4)
    assert len(session) == 4 and list(session)[-1] == ("f", "9")


# -- the true class of an upload ---------------------------------------------------------------------


def test_an_upload_can_be_given_its_true_class_and_verdicts_use_it(at: AppTest):
    _upload(at, "one.png", _one(2))
    assert _metric(at, "True class")[0] == "unknown"
    [box] = [b for b in at.sidebar.selectbox if b.label == "True class of the upload"]
    assert box.value == "unknown" and len(box.options) == 11
    predicted = [m.value for m in at.metric if m.label == "Prediction"][0]
    box.set_value(int(predicted)).run()
    assert_healthy(at)
    assert _metric(at, "True class") == (predicted, "correct")
    wrong = (int(predicted) + 1) % 10
    [box] = [b for b in at.sidebar.selectbox if b.label == "True class of the upload"]
    box.set_value(wrong).run()
    assert _metric(at, "True class") == (str(wrong), "misclassified")
    assert state.true_class_of(at.session_state[state.GOOD_IMAGE], state.load_requested_model(state.ModelRequest())) == wrong
    # the Attack page judges the clean prediction against it too
    at.switch_page("app_pages/attack.py").run()
    assert_healthy(at)
    assert any(f"the true class is {wrong}" in m.value for m in at.main.markdown)


def test_an_upload_true_class_outside_the_model_classes_is_unknown():
    model = state.load_requested_model(state.ModelRequest())
    request = state.ImageRequest.for_upload(state.Upload("x.png", "1" * 64, 1), true_class=10)
    assert state.true_class_of(request, model) is None
    assert state.true_class_of(state.ImageRequest.for_upload(state.Upload("x.png", "1" * 64, 1), true_class=3), model) == 3
