"""The results directory shared by several processes: appends under a file lock, and a row
torn by a crash set aside before the next append."""
import csv
import subprocess
import sys
import time
from pathlib import Path

from ecomeasure.bench.results import RESULT_COLUMNS, ResultsDir

WRITERS = 6
ROWS_PER_WRITER = 15
# Longer than the file buffer (8 KiB): unlocked, one row takes several writes and rows from
# different processes interleave; locked, each row is whole.
PAYLOAD = "x" * 20_000

# Each writer sleeps until the same start time, so that the appends really overlap.
WRITER = """
import sys, time
from ecomeasure.bench.results import ResultsDir
out, writer, rows, start, payload_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
store = ResultsDir(out)
time.sleep(max(0.0, start - time.time()))
for i in range(rows):
    store.append_result({"model": f"w{writer}", "batch_size": i, "status": "ok", "error": "x" * payload_len})
"""


def read(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:]


def test_concurrent_appends_write_one_header_and_whole_rows(tmp_path):
    start = time.time() + 3.0  # after every writer has imported the package
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(w), str(ROWS_PER_WRITER),
                                 str(start), str(len(PAYLOAD))]) for w in range(WRITERS)]
    assert [p.wait(timeout=120) for p in writers] == [0] * WRITERS
    header, rows = read(tmp_path / "results.csv")
    assert header == list(RESULT_COLUMNS)
    assert all(r != list(RESULT_COLUMNS) for r in rows), "header written more than once"
    model, batch_size, error = (RESULT_COLUMNS.index(c) for c in ("model", "batch_size", "error"))
    assert all(len(r) == len(RESULT_COLUMNS) and r[error] == PAYLOAD for r in rows), "a row was torn"
    written = sorted((r[model], int(r[batch_size])) for r in rows)
    assert written == sorted((f"w{w}", i) for w in range(WRITERS) for i in range(ROWS_PER_WRITER))


def test_a_torn_last_row_is_set_aside_before_the_next_append(tmp_path):
    warnings = []
    store = ResultsDir(tmp_path, warn=warnings.append)
    store.append_result({"model": "first", "batch_size": 1, "status": "ok"})
    whole = store.results_csv.read_bytes()
    with open(store.results_csv, "ab") as f:  # a crash in the middle of the second row
        f.write(b"2026-01-01T00:00:00+00:00,ok,,torn-mod")
    store.append_result({"model": "third", "batch_size": 3, "status": "ok"})

    assert [r["model"] for r in store.rows()] == ["first", "third"]
    assert store.results_csv.read_bytes().startswith(whole)
    torn = tmp_path / "results.csv.torn"
    assert torn.read_text() == "2026-01-01T00:00:00+00:00,ok,,torn-mod\n"
    assert len(warnings) == 1 and str(store.results_csv) in warnings[0] and str(torn) in warnings[0]

    store.append_result({"model": "fourth", "batch_size": 4, "status": "ok"})  # whole file: no warning
    assert len(warnings) == 1 and [r["model"] for r in store.rows()][-1] == "fourth"


def test_a_torn_header_is_set_aside_and_written_again(tmp_path):
    warnings = []
    store = ResultsDir(tmp_path, warn=warnings.append)
    store.iterations_csv.write_text("model,quant,bat")
    store.append_iterations([{"model": "m", "quant": "fp16", "batch_size": 1, "iteration": 0}])
    assert [r["model"] for r in store.iteration_rows()] == ["m"]
    assert (tmp_path / "iterations.csv.torn").read_text() == "model,quant,bat\n"
    assert len(warnings) == 1
