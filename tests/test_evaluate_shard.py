"""`evaluate --shard I/N` on any scheduler and `evaluate --merge DIR...`: the single-process tables,
byte for byte, whatever the order of the folders, the number of shards or a killed shard's rerun;
refusals (other plans, missing blocks, differing duplicates) name what is wrong."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuronviz.cli import main
from neuronviz.infra.errors import InputError
from neuronviz.workflows import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("results.csv", "results.md", "results.tex")
# 64 digits in blocks of 16: 4 blocks per attack configuration, 2 configurations → 8 items
# (item k = cell × 4 + block; shard k mod N)
ARGS = [
    "evaluate", "digits-cnn", "--device", "cpu", "--limit", "64", "--block-size", "16", "--attack", "fgsm",
    "--attack", "pgd:steps=2", "--eps", "0.15", "--defence", "none", "--defence", "bit-depth", "--no-progress",
]


def _run(capsys, *extra: str) -> tuple[int, str, str]:
    code = main([*ARGS, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _items(folder: Path) -> list[int]:
    """The plan items (cell × 4 + block) whose block files ``folder`` holds."""
    return sorted(int(p.parent.name[5:]) * 4 + int(p.stem[6:]) for p in (folder / "blocks").glob("cell-*/block-*.json"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One single-process run (the reference tables) and three shards, each in a folder of its own."""
    base = tmp_path_factory.mktemp("shard")
    assert main([*ARGS, "--out", str(base / "single")]) == 0
    for i in range(3):
        assert main([*ARGS, "--shard", f"{i}/3", "--out", str(base / f"s{i}")]) == 0
    return base


def _copy(runs: Path, tmp_path: Path, *names: str) -> list[Path]:
    out = []
    for name in names:
        shutil.copytree(runs / name, tmp_path / name)
        out.append(tmp_path / name)
    return out


def _same_tables(a: Path, b: Path) -> None:
    for name in TABLES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    one, two = json.loads((a / "results.json").read_text()), json.loads((b / "results.json").read_text())
    assert one["rows"] == two["rows"] and one["masking_checks"] == two["masking_checks"]


def test_shards_take_the_torchrun_share_and_write_no_tables(runs):
    for i in range(3):
        folder = runs / f"s{i}"
        assert _items(folder) == [k for k in range(8) if k % 3 == i]  # the rank rule: items[i::3]
        assert not any((folder / name).exists() for name in (*TABLES, "results.json"))
        record = json.loads((folder / "shards" / f"shard-{i}-of-3.json").read_text())
        assert (record["shard"], record["shards"], record["computed"], record["reused"]) == (i, 3, len(_items(folder)), 0)
        assert record["plan_sha256"] == ev.plan_digest(json.loads((folder / "plan.json").read_text()))
        assert record["provenance"]["extra"]["shard"] == {"index": i, "count": 3}
    # a shard's block files are the single-process run's (apart from the seconds each took)
    for path in (runs / "s1" / "blocks").glob("cell-*/block-*.json"):
        shard_block = json.loads(path.read_text())
        single = json.loads((runs / "single" / path.relative_to(runs / "s1")).read_text())
        assert {k: v for k, v in shard_block.items() if k != "seconds"} == {k: v for k, v in single.items() if k != "seconds"}


def test_three_shards_merged_in_reverse_order_by_the_cli_give_the_single_process_tables(runs, tmp_path, capsys):
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    env.pop("WORLD_SIZE", None)
    folders = [str(runs / f"s{i}") for i in (2, 1, 0)]
    done = subprocess.run(
        [sys.executable, "-m", "neuronviz", "evaluate", "--merge", *folders, "--out", str(tmp_path / "merged")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    merged = tmp_path / "merged"
    _same_tables(runs / "single", merged)
    assert done.stdout == (runs / "single" / "results.md").read_text()  # the Markdown table, as a run prints it
    assert "merged 8 block(s) from 3 folder(s) (8 copied" in done.stderr
    assert _items(merged) == list(range(8))  # a complete evaluation folder now
    record = json.loads((merged / "results.json").read_text())["provenance"]["extra"]
    assert [o["shard"] for o in record["computed_by"]] == ["0/3", "1/3", "2/3"]
    assert record["merge"]["folders"] == sorted(str(Path(f).resolve()) for f in folders) and record["merge"]["shards"] == [3]
    assert [o["computed"] for o in record["computed_by"]] == [3, 3, 2]
    assert "world_size" not in record and "shard" not in record
    # a single-process run in the merged folder computes nothing and writes the same tables
    code, out, err = _run(capsys, "--out", str(merged))
    assert code == 0 and "0 block(s) computed, 8 reused" in err and out == done.stdout
    _same_tables(runs / "single", merged)


def test_two_shards_in_one_shared_folder_merge_to_the_same_tables(runs, tmp_path, capsys):
    shared = tmp_path / "shared"
    for i in (1, 0):
        code, out, err = _run(capsys, "--shard", f"{i}/2", "--out", str(shared))
        assert code == 0 and out == "" and f"shard {i}/2: 4 block(s) computed, 0 reused" in err
    assert "holds 8 of the plan's 8 blocks" in err
    assert main(["evaluate", "--merge", str(shared)]) == 0
    out, err = capsys.readouterr()
    assert out == (runs / "single" / "results.md").read_text()
    assert "(0 copied" in err
    _same_tables(runs / "single", shared)


def test_a_killed_shard_reruns_to_the_same_tables(runs, tmp_path, monkeypatch, capsys):
    (s0, s1, s2) = _copy(runs, tmp_path, "s0", "s1", "s2")
    # killed midway: one finished block is gone, a block was half-written into its temporary file
    gone = s1 / "blocks" / "cell-001" / "block-00000.json"  # item 4: shard 1/3's
    torn = gone.parent / ".block-00000.json.k1ll3d.tmp"
    torn.write_text(gone.read_text()[:100])
    gone.unlink()
    (s1 / "shards" / "shard-1-of-3.json").unlink()  # a killed shard writes no record
    other = s2 / "blocks" / "cell-000" / ".block-00002.json.inflight.tmp"  # shard 2's, in flight
    other.write_text("{")
    with pytest.raises(InputError) as missing:  # the temporary file is never taken for a block
        ev.merge([s0, s1, s2], out=tmp_path / "m")
    assert "1 of 8 block(s) are missing" in str(missing.value) and "blocks/cell-001/block-00000.json" in str(missing.value)
    assert "shard 1/3" in str(missing.value) and "--shard 1/3" in str(missing.value)
    code, _, err = _run(capsys, "--shard", "1/3", "--out", str(s1))
    assert code == 0 and "shard 1/3: 1 block(s) computed, 2 reused" in err
    assert not torn.exists() and other.exists()  # its own half-written file is dropped, never another shard's
    assert main(["evaluate", "--merge", str(s0), str(s2), str(s1), "--out", str(tmp_path / "m")]) == 0
    _same_tables(runs / "single", tmp_path / "m")


def test_a_torn_block_file_is_recomputed_by_a_shard_and_refused_by_a_merge(runs, tmp_path, capsys):
    (s0, s1, s2) = _copy(runs, tmp_path, "s0", "s1", "s2")
    block = s0 / "blocks" / "cell-000" / "block-00003.json"  # item 3: shard 0/3's
    whole = block.read_text()
    block.write_text(whole[: len(whole) // 2])  # as a copy cut short leaves it (our writes rename whole files)
    with pytest.raises(InputError, match=r"block-00003.json is not a whole block of this plan .* rerun the shard"):
        ev.merge([s0, s1, s2], out=tmp_path / "m")
    block.write_text(json.dumps(json.loads(whole) | {"labels": json.loads(whole)["labels"][:-1]}))  # one image short
    with pytest.raises(InputError, match="is not a whole block"):
        ev.merge([s0, s1, s2], out=tmp_path / "m")
    code, _, err = _run(capsys, "--shard", "0/3", "--out", str(s0))
    assert code == 0 and "1 block(s) computed, 2 reused" in err
    assert ev.merge([s0, s1, s2], out=tmp_path / "m").copied == 8
    _same_tables(runs / "single", tmp_path / "m")


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    path = tmp_path / "block.json"
    ev.atomic_write(path, "old")

    def killed(fd):
        raise KeyboardInterrupt  # the process dies after writing, before the rename

    monkeypatch.setattr(os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        ev.atomic_write(path, "new and longer")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["block.json"]


def test_merge_refuses_folders_of_different_plans(runs, tmp_path, capsys):
    other = tmp_path / "seed1"
    assert main([*ARGS, "--seed", "1", "--shard", "0/3", "--out", str(other)]) == 0
    capsys.readouterr()
    with pytest.raises(InputError) as error:
        ev.merge([runs / "s1", other, runs / "s2"], out=tmp_path / "m")
    text = str(error.value)
    assert "hold blocks of different evaluations (plan sha256" in text and "the seed differs (0 vs 1)" in text
    assert "model differs" not in text and not (tmp_path / "m").exists()
    plan = json.loads((other / "plan.json").read_text())
    plan |= {"seed": 0, "model": plan["model"] | {"content_hash": "0" * 64}}
    (other / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(InputError, match=r"the model differs \(digits-cnn [0-9a-f]{12} vs digits-cnn 000000000000\)"):
        ev.merge([runs / "s1", other], out=tmp_path / "m")
    # the CLI says it and exits 2
    code = main(["evaluate", "--merge", str(runs / "s1"), str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "nowhere is not an evaluation folder: it has no plan.json" in err


def test_merge_names_every_missing_block_and_its_shard(runs, tmp_path):
    with pytest.raises(InputError) as error:
        ev.merge([runs / "s2", runs / "s0"], out=tmp_path / "m")
    text = str(error.value)
    assert "3 of 8 block(s) are missing" in text  # shard 1/3's items 1, 4, 7
    for item in (1, 4, 7):
        assert f"blocks/cell-{item // 4:03d}/block-{item % 4:05d}.json" in text
    assert "images 16–31; shard 1/3" in text and "--shard 1/3" in text and "shard 0/3" not in text
    assert not (tmp_path / "m").exists()


def test_merge_refuses_duplicates_that_differ_and_accepts_identical_ones(runs, tmp_path):
    (s0, s1) = _copy(runs, tmp_path, "s0", "s1")
    single = tmp_path / "single"
    shutil.copytree(runs / "single", single)
    merged = ev.merge([s0, s1, single, runs / "s2"], out=tmp_path / "m")  # every block of s0–s2 is also in single
    assert merged.duplicates == 8 and merged.blocks == 8
    origins = merged.provenance["extra"]["computed_by"]  # the shards' records, and the finished run's
    assert sorted(str(o["shard"]) for o in origins) == ["0/3", "1/3", "2/3", "None"]
    assert [o["world_size"] for o in origins if o["shard"] is None] == [1]
    _same_tables(runs / "single", tmp_path / "m")
    block = s1 / "blocks" / "cell-000" / "block-00001.json"
    content = json.loads(block.read_text())
    content["adv_pred"][0] = (content["adv_pred"][0] + 1) % 10
    block.write_text(json.dumps(content))
    with pytest.raises(InputError) as error:
        ev.merge([s1, single], out=tmp_path / "m2")
    text = str(error.value)
    assert "1 block(s) were computed twice with different results" in text
    assert str(block) in text and str(single / "blocks" / "cell-000" / "block-00001.json") in text and "differ in adv_pred" in text


def test_shard_and_merge_arguments_are_checked(runs, tmp_path, capsys, monkeypatch):
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(InputError, match="a shard is I/N"):
            ev.parse_shard(bad)
    assert ev.parse_shard(" 2/4 ") == (2, 4)
    code, _, err = _run(capsys, "--merge", str(runs / "s0"), "--out", str(tmp_path / "m"))
    assert code == 2 and "--merge reads the plan from the folders' plan.json: leave out MODEL, --attack, --eps, --defence, --limit, --block-size" in err
    assert main(["evaluate", "--merge", str(runs / "s0"), str(runs / "s1")]) == 2
    assert "merging 2 folders: give the folder the tables go to (--out)" in capsys.readouterr().err
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts a process
    monkeypatch.setenv("RANK", "1")
    code, _, err = _run(capsys, "--shard", "0/2", "--out", str(tmp_path / "x"))
    assert code == 2 and "--shard and torchrun both share out the blocks" in err


def test_the_scheduler_scripts_in_the_docs_parse_and_use_real_options(capsys):
    """docs/evaluate.md's Slurm, submitit and xargs scripts are not run here (no Slurm): they parse
    (bash -n, compile) and every option they give `neuronviz evaluate` is one it has."""
    text = (ROOT / "docs" / "evaluate.md").read_text(encoding="utf-8")
    section = text[text.index("## Any scheduler") : text.index("## A SLURM cluster")]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)
    assert [kind for kind, _ in blocks].count("bash") >= 4 and [kind for kind, _ in blocks].count("python") == 1
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    options = set(re.findall(r"--[a-z][a-z-]+", capsys.readouterr().out))
    used = set()
    for kind, code in blocks:
        if kind == "bash":
            done = subprocess.run(["bash", "-n"], input=code, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, (code, done.stderr)
            for line in re.findall(r"neuronviz evaluate[^\n]*", code.replace("\\\n", " ")):  # continuation lines joined
                used |= set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", line))
        else:
            compile(code, "submitit example", "exec")
            used |= set(re.findall(r'"(--[a-z][a-z-]+)"', code))
    assert {"--shard", "--merge", "--out", "--attack", "--data", "--device", "--no-progress"} <= used and used <= options, used - options
    assert "#SBATCH --array=0-3" in section and '--shard "$SLURM_ARRAY_TASK_ID/4"' in section
    assert "--dependency=afterok" in section and "executor.map_array(shard, range(N))" in section and "xargs -P 4" in section


def test_a_merge_without_any_record_of_who_computed_the_blocks_writes_nothing(runs, tmp_path):
    (s0, s1, s2) = _copy(runs, tmp_path, "s0", "s1", "s2")
    for folder in (s0, s1, s2):
        shutil.rmtree(folder / "shards")  # every shard killed after its last block, before its record
    with pytest.raises(InputError, match=r"no provenance record in .*rerun any shard \(it reuses its blocks\)"):
        ev.merge([s0, s1, s2], out=tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_adaptive_cells_shard_and_merge_to_the_single_process_tables(digits_cnn, tmp_path):
    data = ev.load_dataset("digits", digits_cnn, limit=32)
    kwargs = dict(attacks=["fgsm"], defences=["none", "bit-depth"], block_size=16, adaptive=True, progress=False)
    ev.evaluate(digits_cnn, data, out=tmp_path / "one", **kwargs)
    runs = [ev.evaluate_shard(digits_cnn, data, shard=(i, 2), out=tmp_path / f"s{i}", **kwargs) for i in (1, 0)]
    assert [r.items for r in runs] == [[(0, 1), (1, 1)], [(0, 0), (1, 0)]]  # cell 1: the adaptive cell
    merged = ev.merge([tmp_path / "s1", tmp_path / "s0"], out=tmp_path / "m")
    assert [r["mode"] for r in merged.rows] == ["white-box", "white-box", "adaptive", "adaptive"]
    _same_tables(tmp_path / "one", tmp_path / "m")


def test_transfer_cells_shard_and_merge_to_the_single_process_tables(digits_cnn, tmp_path):
    data = ev.load_dataset("digits", digits_cnn, limit=32)
    kwargs = dict(attacks=["fgsm"], defences=["none"], block_size=16, surrogate="digits-resnet", progress=False)
    ev.evaluate(digits_cnn, data, out=tmp_path / "one", **kwargs)
    for i in (1, 0):
        ev.evaluate_shard(digits_cnn, data, shard=(i, 2), out=tmp_path / f"s{i}", **kwargs)
    merged = ev.merge([tmp_path / "s1", tmp_path / "s0"], out=tmp_path / "m")
    assert [r["mode"] for r in merged.rows] == ["white-box", "transfer"]
    _same_tables(tmp_path / "one", tmp_path / "m")
    record = json.loads((tmp_path / "m" / "results.json").read_text())
    assert "digits-resnet" in json.dumps(record["provenance"])  # the surrogate is named in what the merge writes
    # shards crafted on another surrogate are another plan: refused, nothing written
    ev.evaluate_shard(digits_cnn, data, shard=(0, 2), out=tmp_path / "other", **{**kwargs, "surrogate": "digits-vit"})
    with pytest.raises(InputError):
        ev.merge([tmp_path / "s1", tmp_path / "other"], out=tmp_path / "m2")
    assert not (tmp_path / "m2").exists()


def test_every_dash_in_a_markdown_table_is_explained_under_it():
    """A '–' in results.md is a rate that is not defined; the line under the table says which and why."""
    from neuronviz.workflows.evaluate import to_markdown

    nan = float("nan")
    base = {"attack": "FGSM", "eps": 0.1, "target": "none", "defence": "PSSR", "variant": "", "deployable": True,
            "images": 8, "excluded": 0, "clean_accuracy": 1.0, "attack_success": 0.5, "robust_accuracy": 0.5,
            "fooled": 4, "dsr": 0.5, "accuracy_adversarial": 0.75, "accuracy_clean": 1.0, "mode": "white-box", "masking": "",
            "attack_id": "fgsm", "params": "{}"}
    assert "not defined" not in to_markdown([base])
    none_fooled = to_markdown([base | {"fooled": 0, "dsr": nan}])
    assert "– is a rate that is not defined. DSR: the attack fooled no image on the undefended model (Fooled = 0)" in none_fooled
    plain = base | {"dsr_adaptive": nan, "accuracy_adversarial_adaptive": 0.5}
    adaptive = base | {"attack": "FGSM · adaptive", "mode": "adaptive", "method": "BPDA", "fooled": 0, "dsr": nan,
                       "dsr_adaptive": None, "accuracy_adversarial_adaptive": None}
    both = to_markdown([plain, adaptive])
    assert "the (adaptive) columns of an adaptive row: it is the adaptive attack itself" in both
    assert "DSR (adaptive): the adaptive attack fooled no image on the undefended model" in both
    assert "without an adaptive attack beside it" not in both
