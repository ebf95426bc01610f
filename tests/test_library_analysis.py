"""neuronviz/workflows/analysis.py: the library copy of the dashboard's analysis gives the app's numbers,
and importing it does not import Streamlit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from neuronviz.infra.errors import InputError  # noqa: E402
from neuronviz.workflows import analysis as library  # noqa: E402


@pytest.fixture(scope="module")
def image(digits_test):
    images, _ = digits_test
    return images[:1].clone()


def test_import_does_not_pull_streamlit():
    code = "import sys, neuronviz.workflows.analysis; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_constants_match_the_app():
    from app import runs as app

    assert library.RESTORATIONS == app.RESTORATIONS
    assert library.CONDITIONS == app.CONDITIONS
    assert library.CONDITION_LABELS == app.CONDITION_LABELS
    assert library.DEFAULT_ATTACK == app.DEFAULT_ATTACK
    assert library.DEFAULT_OVERRIDES == app.DEFAULT_OVERRIDES
    assert library.default_choice().overrides == app.default_choice().overrides


def test_digest_matches_the_app(digits_cnn, image):
    from app import runs as app

    args = (digits_cnn, image, {"eps": 0.1, "steps": 3}, [1, 2.5, "x", None])
    assert library.digest(*args) == app.digest(*args)
    changed = image.clone()
    changed[0, 0, 0, 0] += 0.001
    assert library.digest(digits_cnn, changed) != library.digest(digits_cnn, image)
    with pytest.raises(TypeError):
        library.content_key(object())


def test_compute_analysis_equals_the_apps(digits_cnn, image):
    from app import runs as app

    overrides = {"steps": 5, "eps": 0.15}
    mine = library.compute_analysis(digits_cnn, image, library.AttackChoice.make("pgd", overrides, seed=3))
    theirs = app.compute_analysis(digits_cnn, image, app.AttackChoice.make("pgd", overrides, seed=3))
    assert mine.params == theirs.params
    assert mine.benign_class == theirs.benign_class
    assert mine.layers == theirs.layers and mine.default_layer == theirs.default_layer
    torch.testing.assert_close(mine.adversarial, theirs.adversarial, rtol=0, atol=0)
    for condition in library.CONDITIONS:
        torch.testing.assert_close(mine.probabilities(condition), theirs.probabilities(condition), rtol=0, atol=0)
        torch.testing.assert_close(mine.image(condition), theirs.image(condition), rtol=0, atol=0)
        for layer in mine.layers:
            torch.testing.assert_close(
                mine.influence[condition][layer].values, theirs.influence[condition][layer].values, rtol=0, atol=0
            )
    assert mine.attack_succeeded == theirs.attack_succeeded
    assert mine.choice.describe(digits_cnn) == theirs.choice.describe(digits_cnn)


def test_bad_parameters_are_refused(digits_cnn, image):
    with pytest.raises(InputError):
        library.compute_analysis(digits_cnn, image, library.AttackChoice.make("pgd", {"steps": -1}))
