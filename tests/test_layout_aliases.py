"""The flat layout's module paths still import, as the moved modules themselves, with a warning.

relayout: leave this file alone (it names the old paths on purpose).
"""

import importlib
import subprocess
import sys

import pytest

import neuronviz


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("neuronviz.models", "neuronviz.core.models"),
        ("neuronviz.models.sources", "neuronviz.core.models.registry"),
        ("neuronviz.models.registry", "neuronviz.core.models.standard_sources"),
        ("neuronviz.models.pixel", "neuronviz.core.models.pixel"),
        ("neuronviz.defenses", "neuronviz.methods.defences"),
        ("neuronviz.defenses.base", "neuronviz.methods.defences.base"),
        ("neuronviz.evaluation", "neuronviz.workflows.defence_table"),
        ("neuronviz.evalset", "neuronviz.data.labelled"),
        ("neuronviz.entries", "neuronviz.infra.registry"),
        ("neuronviz.budget", "neuronviz.infra.budget"),
        ("neuronviz.figure_cli", "neuronviz.cli.figure"),
    ],
)
def test_old_path_is_the_new_module_and_warns(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} moved to {new}"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new  # the real module is untouched


def test_every_old_path_is_mapped_to_an_existing_module():
    for old in neuronviz.MOVED:
        new = neuronviz.moved_to(f"neuronviz.{old}")
        assert new is not None and importlib.util.find_spec(new) is not None, (old, new)
    assert neuronviz.moved_to("neuronviz.core.models") is None  # new paths are never redirected
    assert neuronviz.moved_to("neuronviz.cli") is None


def test_from_import_of_an_old_name_works():
    sys.modules.pop("neuronviz.defenses", None)
    with pytest.warns(DeprecationWarning):
        from neuronviz.defenses import get_defense  # noqa: F401

        from neuronviz import evaluation
    assert evaluation.__name__ == "neuronviz.workflows.defence_table"


def test_import_neuronviz_stays_light():
    code = "import sys, neuronviz; print(sorted(m for m in ('torch', 'streamlit', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
