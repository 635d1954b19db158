"""``python -m ecomeasure.bench``: the command line.

Exit status: 0 all configurations measured (or already there), 1 some failed (their rows
say why), 2 bad arguments or nothing to measure with, 130 interrupted by Ctrl-C, 143 by
SIGTERM (either way finished rows are kept and the run file says interrupted).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import generation, models, quant
from ..errors import SetupError
from ..schema import ConfigKey
from .display import Display
from .results import HeaderMismatchError, ResultsDir, Terminated, raise_terminated
from .runner import Protocol

if TYPE_CHECKING:
    from .distributed import Rank
    from .environment import Hardware
    from .sweep import Sweep, SweepOptions

EPILOG = """\
examples:
  python -m ecomeasure.bench --model mistral --quant int8_pure
  python -m ecomeasure.bench --model tinyllama qwen2-1.5b --quant fp16 nf4 --batch-size 1 4 8
  python -m ecomeasure.bench --model tiny-llama-test --device cpu --new-tokens 8 --iterations 2

Without the real weights (not cached, hub unreachable or HF_HUB_OFFLINE=1) the model's exact
architecture is built with random weights, saved once under --weights-dir and loaded like a
real checkpoint; result rows say weights=random. A re-run appends to --out and skips rows
already measured (same model, quant, batch size, device and --new-tokens) unless --redo.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds, at least 0, not {text}")
    return value


def _model_name(text: str) -> str:
    try:
        return models.check_model_name(text)
    except models.UnknownModelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _quant_name(text: str) -> str:
    try:
        return quant.get(text).name
    except quant.UnknownQuantError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (defaults are the seed study's protocol)."""
    p = argparse.ArgumentParser(
        prog="python -m ecomeasure.bench", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Energy per generated token of HuggingFace models under each quantization, "
                    "measured by the native NVML meter and by the seed's 10 Hz reference method.")
    what = p.add_argument_group("what to measure")
    what.add_argument("--model", nargs="+", type=_model_name, metavar="MODEL",
                      help="aliases (see --list-models), HF ids or local checkpoint paths")
    what.add_argument("--quant", nargs="+", type=_quant_name, default=["fp16"], metavar="QUANT",
                      help=f"one or more of: {', '.join(quant.QUANTS)} (default: fp16)")
    what.add_argument("--batch-size", nargs="+", type=_positive_int, default=[1], metavar="N",
                      help="one or more batch sizes (default: 1)")
    what.add_argument("--regime", nargs="+", choices=generation.REGIMES, default=["eager", "graph"],
                      metavar="REGIME",
                      help="decode regimes: eager (the seed's model.generate, host-bound at small "
                           "batch sizes), graph (static KV cache, each token's step replayed from a "
                           "CUDA graph: GPU-bound), compiled (graph, the step compiled by torch.compile "
                           "first: ~1 min per configuration) (default: eager graph)")
    what.add_argument("--list-models", action="store_true", help="list the model aliases and exit")
    proto = p.add_argument_group("protocol (defaults: the seed study's)")
    proto.add_argument("--new-tokens", type=_positive_int, default=256, help="tokens generated per sequence (256)")
    proto.add_argument("--warmup", type=_non_negative_int, default=3,
                       help="warmup generations (3); the last one is as long as an iteration")
    proto.add_argument("--warmup-tokens", type=_positive_int, default=50, help="tokens per warmup generation (50)")
    proto.add_argument("--iterations", type=_positive_int, default=10, help="measured generations (10)")
    proto.add_argument("--idle-seconds", type=_seconds, default=10.0,
                       help="idle baseline before each configuration's iterations (10)")
    proto.add_argument("--seed", type=int, default=0, help="seed of random weights and estimated prompts (0)")
    run = p.add_argument_group("where")
    run.add_argument("--device", default=None,
                     help="cuda, cuda:N or cpu (default: cuda; cpu runs the generation loop on the "
                          "CPU for smoke tests, energy measured only if NVML loads)")
    run.add_argument("--out", type=Path, default=Path("results"), help="results directory (results/)")
    run.add_argument("--redo", action="store_true", help="measure again rows already in --out")
    run.add_argument("--weights-dir", type=Path, default=None,
                     help="where random-weight checkpoints are kept (default: "
                          "$ECOMEASURE_CACHE/random-weights or ~/.cache/ecomeasure/random-weights)")
    run.add_argument("--weights", choices=("auto", "real", "random"), default="auto",
                     help="auto: real checkpoint if cached or downloadable, else random weights "
                          "of the exact architecture (default); real: fail without one; random: always random")
    run.add_argument("--pin-cpus", action=argparse.BooleanOptionalAction, default=None,
                     help="under torchrun, pin each rank to its own share of this host's CPU cores by "
                          "LOCAL_RANK (default: on when several ranks share a host)")
    return p


def list_models(display: Display) -> None:
    """Prints the aliases with their HF ids and parameter counts (counted, not typed in)."""
    from rich.table import Table

    table = Table(title="models (any other HF id or local path works too)", title_justify="left")
    for name, justify in [("alias", "left"), ("HuggingFace id", "left"), ("architecture", "left"),
                          ("parameters", "right"), ("layers", "right"), ("hidden", "right"),
                          ("heads / kv", "right"), ("vocab", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for m in models.listed_models():
        alias = " / ".join((m.alias, *m.aliases))
        table.add_row(alias, m.hf_id or models.TEST_MARK.strip(" ()"), m.model_type, f"{models.spec_parameter_count(m.alias) / 1e9:.2f} B",
                      str(m.num_hidden_layers), str(m.hidden_size),
                      f"{m.num_attention_heads} / {m.num_key_value_heads}", f"{m.vocab_size:,}")
    display.out.print(table)


def _run_file(store: ResultsDir, suffix: str = "") -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path, k = store.root / f"run-{stamp}{suffix}.json", 1
    while path.exists():
        k += 1
        path = store.root / f"run-{stamp}-{k}{suffix}.json"
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the benchmark; returns the exit status."""
    main_s = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    display = Display()
    if args.list_models:
        list_models(display)
        return 0
    _check_arguments(parser, args)
    _quiet_transformers()
    setup = _set_up(parser, args, display)

    from . import environment
    from .sweep import Sweep

    options = sweep_options(args)
    versions = environment.versions()
    run_file, run_prefix = _run_file_of(setup)
    run_info = _run_info(args, argv, options, setup, main_s)
    setup.store.write_json(run_file, run_info)
    sweep = Sweep(options, setup.hardware, setup.store, display, versions, run_file, run_info)
    every = _share_among_ranks(sweep, setup, run_info) if setup.rank is not None else None
    run_info["monotonic_s"]["ready"] = time.monotonic()
    interrupted = _run_sweep(sweep)
    _record_finish(setup.store, run_file, run_info, sweep, interrupted)
    peer_failure = None
    if setup.rank is not None:
        peer_failure = _finish_ranks(display, setup.rank, run_prefix, bool(interrupted))
        if not setup.rank.is_main:
            return 130 if interrupted else 1 if sweep.failed else 0
    _print_summary(display, sweep, setup.store, every)
    if interrupted:
        display.log(f"interrupted: {len(sweep.written)} configuration(s) finished in this run are in "
                    f"{setup.store.results_csv}; the one in progress was discarded. Run the same command "
                    "again to resume: finished rows are skipped.")
        return interrupted
    _log_written(display, setup.store, run_file)
    return 1 if sweep.failed or peer_failure is not None else 0


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exits 2 (one line) for what the parser alone cannot check: no model, or a quantization
    whose library is missing."""
    if not args.model:
        parser.error("--model is required: one or more of " + ", ".join(models.valid_names())
                     + " (see --list-models), an HF id or a local path")
    try:
        quant.require_backends(args.quant)
    except quant.BackendMissingError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


def _quiet_transformers() -> None:
    """Our own progress bar and log replace transformers' bars and advice."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


@dataclasses.dataclass(frozen=True)
class Setup:
    """Where the sweep runs: its rank under torchrun (None alone), the torch device, the
    hardware that measures it and the results directory."""
    rank: Rank | None
    device: str
    hardware: Hardware
    store: ResultsDir
    pinned_cpus: list[int] | None = None


def _set_up(parser: argparse.ArgumentParser, args: argparse.Namespace, display: Display) -> Setup:
    """The rank, device, GPU and results directory; exits 2 (one line) where there is no GPU
    or NVML, a bad --device, or an --out that cannot hold these results."""
    from . import distributed, environment

    try:
        rank = distributed.Rank.from_env()  # None without torchrun
        device = environment.resolve_device(rank.device(args.device) if rank else args.device)
        # Before any thread starts: threads inherit the affinity of the thread that starts them.
        pinned_cpus = (distributed.pin_cpus(rank) if rank is not None and
                       (args.pin_cpus if args.pin_cpus is not None else rank.local_world_size > 1) else None)
        hardware = environment.find_hardware(device)
        store = ResultsDir(args.out, warn=display.warn)
        store.check_headers()
        store.root.mkdir(parents=True, exist_ok=True)  # now, not after the first configuration
    except (SetupError, HeaderMismatchError) as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    except OSError as exc:
        parser.exit(2, f"{parser.prog}: error: --out {args.out}: cannot make the results directory "
                       f"({exc.strerror or exc})\n")
    if not hardware.energy.available:
        display.warn(hardware.energy.note + "; energy columns stay empty")
    elif hardware.gpu is not None:
        display.log(f"measuring energy on NVML GPU {hardware.gpu.index}: {hardware.gpu.name} "
                    f"(driver {hardware.driver}); generating on {device}")
    return Setup(rank, device, hardware, store, pinned_cpus)


def sweep_options(args: argparse.Namespace) -> SweepOptions:
    """What the command line asks to measure, and how."""
    from .sweep import SweepOptions

    return SweepOptions(
        models=tuple(args.model), quants=tuple(args.quant), batch_sizes=tuple(args.batch_size),
        regimes=tuple(args.regime),
        protocol=Protocol(new_tokens=args.new_tokens, warmup=args.warmup, warmup_tokens=args.warmup_tokens,
                          iterations=args.iterations, idle_s=args.idle_seconds),
        redo=args.redo, weights_dir=args.weights_dir, weights_mode=args.weights, seed=args.seed)


def _run_file_of(setup: Setup) -> tuple[Path, Path | None]:
    """This process's run file, and under torchrun the launch's prefix: one name for the
    launch, a file per rank, so that rank 0 finds its peers' files by it."""
    if setup.rank is None:
        return _run_file(setup.store), None
    from . import distributed

    distributed.init(setup.rank)
    first = _run_file(setup.store, "-rank0") if setup.rank.is_main else None
    prefix = distributed.from_main(first.with_name(first.name.removesuffix("-rank0.json")) if first else None)
    return distributed.run_file(prefix, setup.rank.rank), prefix


def _run_info(args: argparse.Namespace, argv: Sequence[str] | None, options: SweepOptions, setup: Setup,
              main_s: float) -> dict[str, Any]:
    """The run file's content before the sweep: command, configuration, protocol, environment."""
    from . import environment

    return {"command": [sys.executable, "-m", "ecomeasure.bench", *(sys.argv[1:] if argv is None else argv)],
            "cwd": os.getcwd(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "protocol": dataclasses.asdict(options.protocol),
            "environment": environment.environment(setup.hardware), "configurations": [],
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
            # On the meter's clock: the imports end at "main"; the setup (devices, NVML,
            # the ranks' group) at "ready".
            "monotonic_s": {"process_started": environment.process_started_s(), "main": main_s}}


def _share_among_ranks(sweep: Sweep, setup: Setup, run_info: dict[str, Any]) -> set[ConfigKey]:
    """Gives this rank its share of rank 0's plan; returns every configuration of the launch
    (on rank 0; empty on the others)."""
    from . import distributed, shard
    from .sweep import canonical_model

    rank, options = setup.rank, sweep.options
    assert rank is not None
    # Every rank counts the sweep's parameters (the plan's costs) at once: it imports the
    # models' code, which takes seconds; with rank 0 alone counting, the others would wait for
    # it and then import the same code at their first load.
    run_info["parameters_b"] = {model: shard.params_b(canonical_model(model)) for model in options.models}
    run_info["monotonic_s"]["parameters_counted"] = time.monotonic()
    # Rank 0 plans from what is on disk now and every rank takes its share of that plan.
    shares, every = None, set()
    if rank.is_main:
        pending = sweep.pending()
        every = set(pending) | set(sweep.skipped)
        shares = shard.assign(pending, rank.world_size, lambda k: shard.expected_cost_s(k, options.protocol),
                              shard.expected_load_s)
    shares = distributed.from_main(shares)
    sweep.only = frozenset(shares[rank.rank])
    run_info["distributed"] = {**rank.to_dict(), "pinned_cpus": setup.pinned_cpus, "share": shares[rank.rank]}
    return every


def _run_sweep(sweep: Sweep) -> int:
    """Runs the sweep with SIGTERM handled like Ctrl-C; returns 0, or the exit status of the
    interruption (128 + the signal: 130 for Ctrl-C, 143 for SIGTERM)."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated) if in_main_thread else None
    try:
        sweep.run()
    except KeyboardInterrupt as exc:
        return 143 if isinstance(exc, Terminated) else 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
    return 0


def _record_finish(store: ResultsDir, run_file: Path, run_info: dict[str, Any], sweep: Sweep,
                   interrupted: int) -> None:
    """Completes the run file: when the sweep ended, whether interrupted, what it did."""
    run_info.update(finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    interrupted=bool(interrupted), written=len(sweep.written), failed=len(sweep.failed),
                    skipped=len(sweep.skipped))
    run_info["monotonic_s"]["finished"] = time.monotonic()
    store.write_json(run_file, run_info)


def _finish_ranks(display: Display, rank: Rank, run_prefix: Path | None, interrupted: bool) -> str | None:
    """Waits for every rank (unless interrupted) and leaves the group; returns None, or why
    some rank never finished (which rank 0 tells)."""
    from . import distributed

    peer_failure = None if interrupted else distributed.wait_for_all()
    distributed.finish()
    if peer_failure is not None and rank.is_main and run_prefix is not None:
        display.warn(f"rank(s) {distributed.unfinished_ranks(run_prefix, rank.world_size)} did not finish "
                     f"({peer_failure}); the summary shows what is on disk. Run the same command again "
                     "to measure the rest.")
    return peer_failure


def _log_written(display: Display, store: ResultsDir, run_file: Path) -> None:
    written = [p.name + ("/" if p.is_dir() else "") for p in
               (store.results_csv, store.iterations_csv, store.traces_dir, run_file) if p.exists()]
    display.log(f"results in {store.root}/ ({', '.join(written)})")


def _print_summary(display: Display, sweep: Sweep, store: ResultsDir,
                   wanted: set[ConfigKey] | None = None) -> None:
    """The latest row of every configuration of this sweep (run now or found on disk);
    ``wanted``: of these configurations instead (every rank's)."""
    if wanted is None:
        wanted = set(sweep.written) | set(sweep.failed) | set(sweep.unavailable) | set(sweep.skipped)
    latest: dict[ConfigKey, dict[str, str]] = {}
    for row in store.rows():
        try:
            key = ConfigKey.from_row(row)
        except (KeyError, ValueError):
            continue
        if key in wanted and row.get("device") == sweep.device_column and \
                row.get("new_tokens") == str(sweep.options.protocol.new_tokens):
            latest[key] = row
    if latest:
        display.summary(list(latest.values()), title=f"{store.results_csv}")
