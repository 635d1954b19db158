"""python -m ecomeasure.bench.merge: a dataset grown over several GPU runs keeps one row per
configuration, the newest measured one, with its iterations and traces."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from ecomeasure.bench import merge

COLUMNS = ["gpu_name", "model", "quant", "batch_size", "new_tokens", "device", "regime", "status",
           "throughput_tok_s_mean", "traces"]
IT_COLUMNS = ["model", "quant", "batch_size", "regime", "iteration", "duration_s"]


def make_dir(root: Path, rows: list[tuple[str, str, str, str, str]]) -> Path:
    """rows: (model, quant, regime, status, tok/s); two iterations and a trace per ok row."""
    root.mkdir()
    (root / "traces").mkdir()
    results, iterations = [], []
    for model, quant, regime, status, tok_s in rows:
        stem = f"traces/{model}_{quant}_bs1_{regime}"
        results.append(dict(zip(COLUMNS, ["H200", model, quant, "1", "64", "cuda", regime, status, tok_s,
                                          f"{stem}.npz" if status == "ok" else ""])))
        if status == "ok":
            (root / f"{stem}.npz").write_text(tok_s)
            (root / f"{stem}_reference.csv").write_text(tok_s)
            iterations += [dict(zip(IT_COLUMNS, [model, quant, "1", regime, str(k), tok_s])) for k in range(2)]
    for name, cols, data in (("results.csv", COLUMNS, results), ("iterations.csv", IT_COLUMNS, iterations)):
        with (root / name).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=cols)
            writer.writeheader()
            writer.writerows(data)
    (root / f"run-{root.name}.json").write_text("{}")
    return root


def read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_new_rows_replace_old_ones_and_add_the_rest(tmp_path):
    dst = make_dir(tmp_path / "dst", [("a", "fp16", "eager", "ok", "10"), ("a", "fp16", "graph", "ok", "100"),
                                      ("b", "nf4", "graph", "unavailable", "")])
    src = make_dir(tmp_path / "src", [("a", "fp16", "graph", "ok", "120"), ("b", "nf4", "graph", "ok", "90"),
                                      ("c", "int8", "eager", "failed", ""), ("c", "fp16", "eager", "ok", "7")])
    added, replaced = merge.merge(src, dst)
    assert [k[1:3] + k[-1:] for k in replaced] == [("a", "fp16", "graph"), ("b", "nf4", "graph")]
    assert [k[1:3] + k[-1:] for k in added] == [("c", "fp16", "eager")]
    rows = {(r["model"], r["quant"], r["regime"]): r for r in read(dst / "results.csv")}
    assert len(rows) == 4 and ("c", "int8", "eager") not in rows  # a failure is not merged
    assert rows[("a", "fp16", "graph")]["throughput_tok_s_mean"] == "120"
    assert rows[("a", "fp16", "eager")]["throughput_tok_s_mean"] == "10"  # untouched
    assert rows[("b", "nf4", "graph")]["status"] == "ok"
    its = read(dst / "iterations.csv")
    assert sorted((r["model"], r["regime"], r["duration_s"]) for r in its) == sorted(
        [("a", "eager", "10")] * 2 + [("a", "graph", "120")] * 2 + [("b", "graph", "90")] * 2
        + [("c", "eager", "7")] * 2)
    assert (dst / "traces" / "a_fp16_bs1_graph.npz").read_text() == "120"
    assert (dst / "traces" / "a_fp16_bs1_graph_reference.csv").read_text() == "120"
    assert (dst / "traces" / "c_fp16_bs1_eager.npz").exists() and (dst / "run-src.json").exists()


def test_a_replaced_rows_traces_under_another_name_are_removed(tmp_path):
    dst = make_dir(tmp_path / "dst", [("a", "fp16", "graph", "ok", "100")])
    old = dst / "traces" / "a_fp16_bs1_graph.npz"
    renamed = old.with_name("a_fp16_bs1_graph-2.npz")
    old.rename(renamed)
    (dst / "traces" / "a_fp16_bs1_graph_reference.csv").rename(dst / "traces" / "a_fp16_bs1_graph-2_reference.csv")
    rows = read(dst / "results.csv")
    rows[0]["traces"] = "traces/a_fp16_bs1_graph-2.npz"
    merge.write(dst / "results.csv", COLUMNS, rows)
    src = make_dir(tmp_path / "src", [("a", "fp16", "graph", "ok", "120")])
    merge.merge(src, dst)
    assert sorted(p.name for p in (dst / "traces").iterdir()) == ["a_fp16_bs1_graph.npz",
                                                                  "a_fp16_bs1_graph_reference.csv"]


def test_different_columns_are_refused(tmp_path):
    dst = make_dir(tmp_path / "dst", [("a", "fp16", "graph", "ok", "100")])
    src = make_dir(tmp_path / "src", [("a", "fp16", "graph", "ok", "120")])
    rows = read(src / "results.csv")
    merge.write(src / "results.csv", COLUMNS[:-1], [{k: r[k] for k in COLUMNS[:-1]} for r in rows])
    before = (dst / "results.csv").read_text()
    with pytest.raises(merge.MergeError, match="different columns"):
        merge.merge(src, dst)
    assert (dst / "results.csv").read_text() == before


def test_where_merges_only_the_matching_rows(tmp_path):
    dst = make_dir(tmp_path / "dst", [("a", "fp16", "graph", "ok", "100"), ("a", "nf4", "graph", "ok", "90")])
    src = make_dir(tmp_path / "src", [("a", "fp16", "graph", "ok", "120"), ("a", "nf4", "graph", "ok", "95")])
    added, replaced = merge.merge(src, dst, {"quant": "fp16"})
    assert added == [] and [k[2] for k in replaced] == ["fp16"]
    rows = {r["quant"]: r["throughput_tok_s_mean"] for r in read(dst / "results.csv")}
    assert rows == {"fp16": "120", "nf4": "90"}
    assert (dst / "traces" / "a_nf4_bs1_graph.npz").read_text() == "90"


def test_a_directory_without_results_is_one_line_and_exit_2(tmp_path, capsys):
    dst = make_dir(tmp_path / "dst", [("a", "fp16", "graph", "ok", "100")])
    before = (dst / "results.csv").read_text()
    with pytest.raises(SystemExit) as exc:
        merge.main([str(tmp_path / "nothing"), "--into", str(dst)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "is not a results directory" in err and err.count("\n") == 1
    assert (dst / "results.csv").read_text() == before


def test_different_columns_from_the_command_are_one_line_and_exit_2(tmp_path):
    """Run as users run it: ``python -m ecomeasure.bench.merge``; DST is left as it was."""
    dst = make_dir(tmp_path / "dst", [("a", "fp16", "graph", "ok", "100")])
    src = make_dir(tmp_path / "src", [("a", "fp16", "graph", "ok", "120")])
    rows = read(src / "results.csv")
    merge.write(src / "results.csv", COLUMNS[:-1], [{k: r[k] for k in COLUMNS[:-1]} for r in rows])
    before = (dst / "results.csv").read_text()
    done = subprocess.run([sys.executable, "-m", "ecomeasure.bench.merge", str(src), "--into", str(dst)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "different columns" in done.stderr
    assert (dst / "results.csv").read_text() == before


def name_card(root: Path, uuids: list[str]) -> None:
    """Adds a gpu_uuid column to ``root``'s results.csv, one uuid per row in order."""
    rows = read(root / "results.csv")
    merge.write(root / "results.csv", COLUMNS + ["gpu_uuid"], [dict(r, gpu_uuid=u) for r, u in zip(rows, uuids)])


def test_a_row_another_card_measured_is_kept_unless_told(tmp_path, capsys):
    """Two cards of one model measure the same configuration: the second card's row must not
    silently take the first's place (a directory holds one row per configuration)."""
    dst = make_dir(tmp_path / "dst", [("a", "fp16", "graph", "ok", "100"), ("a", "nf4", "graph", "ok", "90")])
    src = make_dir(tmp_path / "src", [("a", "nf4", "graph", "ok", "95"), ("b", "fp16", "graph", "ok", "7")])
    name_card(dst, ["GPU-1", "GPU-1"])
    name_card(src, ["GPU-2", "GPU-2"])
    before = (dst / "results.csv").read_text(), (dst / "traces" / "a_nf4_bs1_graph.npz").read_text()
    with pytest.raises(merge.MergeError, match="1 rows .* another card .*a nf4 1 64 cuda graph, GPU-1 by GPU-2"):
        merge.merge(src, dst)
    with pytest.raises(SystemExit) as exc:
        merge.main([str(src), "--into", str(dst)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "--replace-other-cards" in err
    assert ((dst / "results.csv").read_text(), (dst / "traces" / "a_nf4_bs1_graph.npz").read_text()) == before

    added, replaced = merge.merge(src, dst, replace_other_cards=True)
    assert [k[2] for k in replaced] == ["nf4"] and [k[1] for k in added] == ["b"]
    assert {r["quant"] + r["model"]: r["gpu_uuid"] for r in read(dst / "results.csv")} == {
        "fp16a": "GPU-1", "nf4a": "GPU-2", "fp16b": "GPU-2"}


@pytest.mark.parametrize("old, new", [("GPU-1", "GPU-1"), ("", "GPU-2"), ("GPU-1", "")])
def test_the_same_card_or_a_row_naming_none_replaces_as_before(tmp_path, old, new):
    dst = make_dir(tmp_path / "dst", [("a", "nf4", "graph", "ok", "90")])
    src = make_dir(tmp_path / "src", [("a", "nf4", "graph", "ok", "95")])
    name_card(dst, [old])
    name_card(src, [new])
    added, replaced = merge.merge(src, dst)
    assert added == [] and len(replaced) == 1
    assert [r["throughput_tok_s_mean"] for r in read(dst / "results.csv")] == ["95"]
