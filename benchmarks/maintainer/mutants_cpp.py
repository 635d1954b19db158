"""Hand-made mutants of the native core: does the test suite notice each one?

Each mutant is one small edit of csrc/ (a plausible bug). The script copies the tracked tree
to a temporary directory once, and for each mutant applies the edit, rebuilds (incrementally)
into a private --target directory, runs the relevant tests against that build (stopping at the
first failure) and restores the file. A mutant is *killed* when a test fails, *survived* when
all pass. A tool, not part of CI's pytest run (a few minutes on 2 cores):

    python benchmarks/maintainer/mutants_cpp.py [--only NAME ...] [--out DIR]

Prints a table and writes DIR/mutants.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ["tests/test_integration_properties.py", "tests/test_meter.py"]

# name: (file, original text, mutated text). The original must occur exactly once.
MUTANTS = {
    "inverted_calibration": ("csrc/energy.cpp", "out.energy_j = smp.energy_j * out.calibration;",
                             "out.energy_j = smp.energy_j / out.calibration;"),
    "no_min_calibration_span": ("csrc/energy.cpp", "ctn[b - 1] - ctn[a] >= calibration_min_span_ns",
                                "ctn[b - 1] - ctn[a] >= 0"),
    "complete_forced_true": ("csrc/energy.cpp", "e.complete = in.covered && !lost;", "e.complete = true;"),
    "gap_overlap_inverted": ("csrc/energy.cpp", "g.from_ns < t1 && g.to_ns > t0",
                             "g.from_ns < t0 && g.to_ns > t1"),
    "counter_before_samples": ("csrc/energy.cpp",
                               "for (Source s : {Source::samples, Source::counter, Source::instant",
                               "for (Source s : {Source::counter, Source::samples, Source::instant"),
    "no_edge_interpolation": ("csrc/integrate.cpp",
                              "double prev_p = value_at(t, p, n, t0, /*from_right=*/true);",
                              "double prev_p = p[std::min(std::size_t(std::upper_bound(t, t + n, t0) - t), n - 1)];"),
    "step_instead_of_linear": ("csrc/integrate.cpp", "return v[i - 1] + f * (v[i] - v[i - 1]);",
                               "return v[i - 1] + 0 * f;"),
    "window_search_off_by_one": ("csrc/integrate.cpp",
                                 "const auto first = std::upper_bound(t, t + n, t0);",
                                 "const auto first = std::lower_bound(t, t + n, t0) + 1;"),
    "cumulative_start_not_from_right": ("csrc/integrate.cpp",
                                        "- value_at(t, e, n, t0, /*from_right=*/true);",
                                        "- value_at(t, e, n, t0);"),
    "cumulative_end_not_from_right": ("csrc/integrate.cpp",
                                      "r.energy_j = value_at(t, e, n, t1, /*from_right=*/true)",
                                      "r.energy_j = value_at(t, e, n, t1)"),
    "busy_share_no_clip_at_start": ("csrc/integrate.cpp",
                                    "std::min(t[i], t1) - std::max(t[i - 1], t0);",
                                    "std::min(t[i], t1) - t[i - 1];"),
    "busy_share_sample_covers_next_period": ("csrc/integrate.cpp", "busy += pct[i] * double(overlap);",
                                             "busy += pct[i - 1] * double(overlap);"),
    "counter_lag_sign": ("csrc/sampler.cpp", "/ 2 - options_.counter_lag_ns;",
                         "/ 2 + options_.counter_lag_ns;"),
}


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=sorted(MUTANTS), help="run only these mutants")
    parser.add_argument("--out", type=Path, default=Path("out/mutants"))
    args = parser.parse_args()
    names = args.only or list(MUTANTS)
    files = run(["git", "ls-files"], ROOT).stdout.split()
    results = []
    with tempfile.TemporaryDirectory(prefix="ecomeasure-mutants-") as tmp:
        tree, site = Path(tmp) / "tree", Path(tmp) / "site"
        for f in files:
            (tree / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, tree / f)
        env = {**os.environ, "PYTHONPATH": str(site)}
        for name in names:
            path, original, mutated = MUTANTS[name]
            source = (tree / path).read_text()
            if source.count(original) != 1:
                print(f"{name}: the original text is not found exactly once in {path}; update the mutant",
                      file=sys.stderr)
                return 2
            (tree / path).write_text(source.replace(original, mutated))
            started = time.monotonic()
            try:
                shutil.rmtree(site, ignore_errors=True)
                build = run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                             "--target", str(site), "."], tree)
                if build.returncode != 0:
                    verdict, detail = "killed (does not build)", build.stderr.strip().splitlines()[-1:]
                else:
                    tests = run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
                                tree, env)
                    failed = [ln for ln in tests.stdout.splitlines() if ln.startswith("FAILED")]
                    verdict = "killed" if tests.returncode != 0 else "survived"
                    detail = failed[:1] or tests.stdout.strip().splitlines()[-1:]
            finally:
                (tree / path).write_text(source)
            row = {"mutant": name, "file": path, "verdict": verdict, "by": " ".join(detail),
                   "seconds": round(time.monotonic() - started, 1)}
            results.append(row)
            print(f"{name:38s} {verdict:10s} {row['seconds']:6.1f} s  {row['by'][:100]}", flush=True)
    killed = sum(r["verdict"].startswith("killed") for r in results)
    print(f"{killed} of {len(results)} mutants killed")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mutants.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
