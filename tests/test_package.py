import json
import subprocess
import sys
from pathlib import Path

from neuronviz.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_import_neuronviz_does_not_import_streamlit():
    code = (
        "import sys, neuronviz, neuronviz.core.models, neuronviz.data.datasets, neuronviz.data.images, neuronviz.figures, "
        "neuronviz.cli, neuronviz.training.digits\n"
        "assert 'streamlit' not in sys.modules, 'streamlit was imported'\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_cli_lists_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "digits-cnn " in out and "resnet18" in out and "1×28×28" in out


def test_cli_evaluate_prints_the_measured_metrics(capsys):
    assert main(["card", "digits-cnn", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["test_images"] == 360 and metrics["clean_accuracy"] >= 0.97
    assert {(r["attack"], r["eps"]) for r in metrics["attacks"]} >= {("FGSM", 0.1), ("PGD", 0.1)}


def test_cli_errors_are_messages_not_tracebacks(capsys):
    assert main(["train", "no-such-model"]) == 2
    assert "no training recipe" in capsys.readouterr().err
    assert main(["evaluate", "resnet18"]) == 2  # zoo weights not cached in the test TORCH_HOME
    assert "not in the local cache" in capsys.readouterr().err


def test_cli_lists_attacks_with_their_parameters(capsys):
    assert main(["attacks"]) == 0
    out = capsys.readouterr().out
    assert "pgd" in out and "PGD (L∞)" in out and "0.03137 (8/255); digits: 0.1" in out
