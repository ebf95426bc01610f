"""neuronviz evaluate: the numbers (same as the Batch page's), resuming, killing, formats, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from neuronviz.cli import main
from neuronviz.infra.errors import InputError
from neuronviz.workflows import evaluate as ev
from neuronviz.workflows import provenance
from neuronviz.workflows.batch import evaluate_batch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits32(digits_cnn):
    return ev.load_dataset("digits", digits_cnn, limit=32)


def _row(rows, attack_prefix, defence):
    found = [r for r in rows if r["attack"].startswith(attack_prefix) and r["defence"] == defence]
    assert len(found) == 1, (attack_prefix, defence, rows)
    return found[0]


def test_numbers_are_the_batch_pages_numbers(digits_cnn, digits32):
    result = ev.evaluate(digits_cnn, digits32, ["pgd:steps=5"], defences=["none", "nip-guided"], seed=3, progress=False)
    batch = evaluate_batch(digits_cnn, digits32.images, digits32.labels, "pgd", {"steps": 5}, defences=["none", "nip-guided"], seed=3)
    summary = batch.summary()
    for defence, label in (("none", "no defence"), ("nip-guided", "NIP (guided)")):
        row = _row(result.rows, "PGD-5", label)
        assert row["images"] == 32 and row["excluded"] == 0
        assert row["attack_success"] == pytest.approx(summary.attack_success)
        assert row["clean_accuracy"] == pytest.approx(summary.clean_accuracy)
        assert row["dsr"] == pytest.approx(summary.dsr[defence])
        assert row["accuracy_adversarial"] == pytest.approx(summary.accuracy_after[defence])
        assert row["accuracy_clean"] == pytest.approx(summary.clean_accuracy_after[defence])
    robust = float(((batch.clean_pred == batch.labels) & (batch.adv_pred == batch.labels)).double().mean())
    assert _row(result.rows, "PGD-5", "no defence")["robust_accuracy"] == pytest.approx(robust)
    assert 0 < summary.attack_success < 1  # a table that can tell the cases apart


def test_block_size_and_order_never_change_the_numbers(digits_cnn, digits32):
    kwargs = dict(attacks=["pgd:steps=3"], defences=["none"], seed=1, progress=False)
    a = ev.evaluate(digits_cnn, digits32, block_size=16, **kwargs)
    b = ev.evaluate(digits_cnn, digits32, block_size=32, **kwargs)
    assert a.rows == b.rows
    assert [blk["adv_pred"] for blk in a.blocks[0]] == [b.blocks[0][0]["adv_pred"][:16], b.blocks[0][0]["adv_pred"][16:]]
    other_seed = ev.evaluate(digits_cnn, digits32, block_size=16, **(kwargs | {"seed": 2}))
    assert [blk["l2"] for blk in other_seed.blocks[0]] != [blk["l2"] for blk in a.blocks[0]]  # the seed is used


def test_eps_grid_and_attacks_without_a_budget(digits_cnn, digits32):
    cells = ev.build_plan(digits_cnn, ["fgsm", "pgd:steps=5", "deepfool:steps=3"], eps=["0.05", "8/255"])
    assert [(c.attack, c.eps) for c in cells] == [
        ("fgsm", 0.05), ("fgsm", pytest.approx(8 / 255)), ("pgd", 0.05), ("pgd", pytest.approx(8 / 255)), ("deepfool", None)
    ]
    assert cells[2].params == {"eps": 0.05, "alpha": 0.01, "steps": 5, "random_start": True}
    result = ev.evaluate(digits_cnn, digits32, ["fgsm"], defences=["none"], eps=["0.02", "0.2"], progress=False)
    weak, strong = (_row([r for r in result.rows if r["eps"] == e], "FGSM", "no defence") for e in (0.02, 0.2))
    assert weak["attack_success"] < strong["attack_success"]


def test_autoattack_standard_row(digits_cnn, digits32):
    cells = ev.build_plan(digits_cnn, ["pgd:steps=20"], eps=["0.05"], autoattack=True)
    assert cells[-1].attack == "autoattack" and cells[-1].params == {"norm": "Linf", "eps": 0.05, "version": "standard"}
    # (at ε = 0.1 APGD-CE already fools every one of these images, so the ensemble stops early)
    assert cells[-1].target is None and cells[-1].name == "AutoAttack (standard)"
    data = digits32.head(16)
    result = ev.evaluate(digits_cnn, data, ["pgd:steps=20"], defences=["none"], eps=["0.1"], autoattack=True, progress=False)
    pgd, aa = _row(result.rows, "PGD-20", "no defence"), _row(result.rows, "AutoAttack", "no defence")
    assert aa["robust_accuracy"] <= pgd["robust_accuracy"]  # the ensemble is at least as strong as its PGD
    assert aa["images"] == 16


def test_targeted_cells_exclude_images_already_of_the_target(digits_cnn, digits32):
    clean = digits_cnn.predict(digits32.images)[0]
    already = int((clean == 3).sum())
    assert already > 0
    result = ev.evaluate(digits_cnn, digits32, ["fgsm"], defences=["none", "nip-guided"], target=3, progress=False)
    row = _row(result.rows, "FGSM", "no defence")
    assert row["excluded"] == already and row["images"] == 32 and row["target"] == "3"
    # FGSM has no randomness: the attacked images on their own give the same success and DSR
    keep = clean != 3
    alone = evaluate_batch(digits_cnn, digits32.images[keep], digits32.labels[keep], "fgsm", None, ["none", "nip-guided"], target=3)
    assert row["attack_success"] == pytest.approx(alone.summary().attack_success)
    nip = _row(result.rows, "FGSM", "NIP (guided)")
    assert nip["dsr"] == pytest.approx(alone.summary().dsr["nip-guided"])
    # accuracies are over all 32: an image left alone counts as it is
    left_correct = int((digits32.labels[~keep] == 3).sum())
    kept_correct = int((alone.adv_pred == alone.labels).sum())
    assert row["accuracy_adversarial"] == pytest.approx((kept_correct + left_correct) / 32)
    assert row["clean_accuracy"] == pytest.approx(float((clean == digits32.labels).double().mean()))
    flags = [f for blk in result.blocks[0] for f in blk["excluded"]]
    assert flags == (clean == 3).tolist()
    with pytest.raises(InputError, match="no targeted mode"):
        ev.build_plan(digits_cnn, ["deepfool"], target=3)
    with pytest.raises(InputError, match="outside"):
        ev.build_plan(digits_cnn, ["fgsm"], target=12)


def test_tables_in_four_formats_with_provenance(digits_cnn, digits32, tmp_path):
    result = ev.evaluate(digits_cnn, digits32, ["fgsm"], defences=["none", "pssr"], out=tmp_path, progress=False)
    assert set(result.files) == {"csv", "md", "tex", "json"}
    frame = pd.read_csv(tmp_path / "results.csv")
    assert list(frame.columns) == list(ev.COLUMNS) and len(frame) == 2
    assert frame["accuracy_adversarial"].tolist() == pytest.approx([r["accuracy_adversarial"] for r in result.rows])
    md = (tmp_path / "results.md").read_text().splitlines()
    assert len(md) == 2 + 2 and md[2].startswith("| FGSM | 0.1 | none | no defence |")
    pct = f"{100 * result.rows[1]['accuracy_adversarial']:.1f}%"
    assert pct in md[3] and "PSSR" in md[3]
    tex = (tmp_path / "results.tex").read_text()
    assert tex.startswith(r"\begin{tabular}") and r"\toprule" in tex and pct.replace("%", r"\%") in tex
    document = json.loads((tmp_path / "results.json").read_text())
    record = document["provenance"]
    assert record["model"]["content_hash"] == digits_cnn.content_hash and record["model"]["name"] == "digits-cnn"
    assert record["dataset"]["sha256"] == digits32.digest and record["dataset"]["images"] == 32
    assert record["attacks"][0]["params"] == {"eps": 0.1}
    assert record["defences"][1]["defence"] == "pssr" and record["defences"][1]["params"] == result.defences[1][1]
    assert record["seeds"]["evaluation"] == 0 and record["device"]["type"] == "cpu"
    assert set(record["versions"]) >= {"torch", "torchvision", "torchattacks", "captum", "neuronviz", "python"}
    assert record["versions"]["torch"] == torch.__version__
    assert document["rows"][0]["dsr"] == 0.0


def test_a_rerun_skips_finished_blocks_and_refuses_another_plan(digits_cnn, digits32, tmp_path):
    kwargs = dict(attacks=["fgsm"], defences=["none"], block_size=16, out=tmp_path, progress=False)
    first = ev.evaluate(digits_cnn, digits32, **kwargs)
    assert (first.computed, first.reused) == (2, 0)
    block = tmp_path / "blocks" / "cell-000" / "block-00001.json"
    block.unlink()
    again = ev.evaluate(digits_cnn, digits32, **kwargs)
    assert (again.computed, again.reused) == (1, 1) and again.rows == first.rows
    (tmp_path / "blocks" / "cell-000" / "block-00000.json").write_text('{"format": 1, "start": 0, "sto')  # torn
    half = tmp_path / "blocks" / "cell-000" / ".block-00001.json.x1y2.tmp"  # what a kill mid-write leaves
    half.write_text('{"format": 1')
    third = ev.evaluate(digits_cnn, digits32, **kwargs)
    assert (third.computed, third.reused) == (1, 1) and third.rows == first.rows
    assert not half.exists()
    with pytest.raises(InputError, match="different evaluation"):
        ev.evaluate(digits_cnn, digits32, **(kwargs | {"attacks": ["fgsm:eps=0.2"]}))
    with pytest.raises(InputError, match="multiple of 16"):
        ev.evaluate(digits_cnn, digits32, **(kwargs | {"block_size": 24, "out": None}))


def _cli(out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "neuronviz", "evaluate", "digits-cnn", "--device", "cpu", "--limit", "64",
        "--attack", "fgsm", "--attack", "pgd:steps=5", "--eps", "0.05,0.15", "--defence", "none",
        "--defence", "nip-guided", "--block-size", "16", "--out", str(out), *extra,
    ]


def _env() -> dict:
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


@pytest.mark.slow
def test_a_run_killed_at_any_moment_resumes_to_the_same_table(tmp_path, capsys):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    total = 4 * 4  # 4 cells × 4 blocks of 16
    proc = subprocess.Popen(_cli(killed, "--no-progress"), cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list((killed / "blocks").glob("*/block-*.json"))) if killed.exists() else 0
        if done >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stderr.close()
    finished = list((killed / "blocks").glob("*/block-*.json"))
    assert 3 <= len(finished) < total and not (killed / "results.csv").exists()
    for path in finished:  # every block file there is whole
        assert json.loads(path.read_text())["format"] == ev.FORMAT
    rerun = subprocess.run(_cli(killed, "--no-progress"), cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    reused = int(rerun.stderr.split(" block(s) computed, ")[1].split(" reused")[0])
    assert reused == len(finished) and reused < total
    assert main(_cli(whole, "--no-progress")[3:]) == 0  # the uninterrupted run, in this process
    straight = capsys.readouterr()
    for name in ("results.csv", "results.md", "results.tex"):
        assert (killed / name).read_text() == (whole / name).read_text(), name
    assert rerun.stdout == straight.out and "| FGSM | 0.15 | none | NIP (guided) |" in straight.out
    assert not list(killed.rglob("*.tmp"))


def test_cli_progress_bars_and_tables(tmp_path, capsys):
    assert main(["evaluate", "digits-cnn", "--device", "cpu", "--limit", "32", "--attack", "fgsm", "--defence", "none",
                 "--block-size", "16", "--out", str(tmp_path / "run")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("| Attack | ε |") and captured.out.count("\n") == 3
    assert "FGSM ε=0.1" in captured.err and "img/s" in captured.err and "32/32" in captured.err
    assert "2 block(s) computed, 0 reused" in captured.err
    assert main(["evaluate", "digits-cnn", "--device", "cpu", "--attack", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "unknown attack 'nope'" in capsys.readouterr().err
    assert main(["evaluate", "digits-cnn", "--device", "cpu", "--data", "imagenet", "--out", str(tmp_path / "x")]) == 2
    assert "unknown data set 'imagenet'" in capsys.readouterr().err


def test_data_set_specs(digits_cnn):
    assert ev.parse_spec("digits:split=train") == ("digits", {"split": "train"})
    assert ev.parse_spec("Digits:test") == ("digits", {"": "test"})
    train = ev.load_dataset("digits:train", digits_cnn)
    assert train.size == 1437 and train.spec == "digits:split=train" and train.ids[0] == "digit-train-0"
    test = ev.load_dataset("digits", digits_cnn, limit=10)
    assert test.size == 10 and test.digest != ev.load_dataset("digits", digits_cnn, limit=11).digest
    assert test.digest == provenance.tensor_set_digest(test.images, test.labels, test.ids)
    with pytest.raises(InputError, match="no option 'root'"):
        ev.load_dataset("digits:root=/tmp", digits_cnn)
    with pytest.raises(InputError, match="split must be one of"):
        ev.load_dataset("digits:valid", digits_cnn)
    with pytest.raises(InputError, match="positive integer"):
        ev.load_dataset("digits", digits_cnn, limit=0)


def test_attack_and_defence_specs(digits_cnn):
    assert ev.parse_item("pgd:steps=20,eps=8/255,random_start=false") == ("pgd", {"steps": 20, "eps": pytest.approx(8 / 255), "random_start": False})
    assert ev.parse_item("apgd:loss=dlr") == ("apgd", {"loss": "dlr"})
    with pytest.raises(InputError, match="key=value"):
        ev.parse_item("pgd:20")
    with pytest.raises(InputError, match="out of range"):
        ev.build_plan(digits_cnn, ["pgd:steps=0"])
    with pytest.raises(InputError, match="listed twice"):
        ev.build_plan(digits_cnn, ["fgsm", "fgsm:eps=0.1"])
    with pytest.raises(InputError, match="unknown defence"):
        ev.resolve_defences(digits_cnn, ["none", "nope"])
    assert ev.resolve_defences(digits_cnn, ["nip-guided:steps=3"])[0][1]["steps"] == 3


def test_provenance_record(digits_cnn):
    record = provenance.record(digits_cnn, dataset={"spec": "digits"}, attacks=[{"attack": "fgsm", "params": {"eps": 0.1}}],
                               seeds={"evaluation": 7}, extra={"note": "x"})
    assert record["model"] == provenance.model_record(digits_cnn) and record["model"]["input"] == [1, 28, 28]
    assert record["attacks"] == [{"attack": "fgsm", "params": {"eps": 0.1}}] and record["seeds"] == {"evaluation": 7}
    assert record["device"]["device"] == "cpu" and record["extra"] == {"note": "x"}
    assert record["created"].endswith("+00:00")
    assert provenance.versions(["no-such-package-neuronviz-test"])["no-such-package-neuronviz-test"] is None
    json.dumps(record)  # plain values only
