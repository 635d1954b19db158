"""The sweep: models x quantizations x batch sizes, each configuration measured and written
as soon as it completes. A model is loaded once per quantization and reused across batch
sizes; a configuration that fails (out of memory, a load error) is recorded and the sweep
goes on."""
from __future__ import annotations

import gc
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .. import fmt, generation, models, roofline, weights
from .. import quant as quant_schemes
from ..errors import summarize
from ..schema import BASELINE_QUANT, ConfigKey
from .display import Display
from .environment import Hardware
from .results import ResultsDir, interrupts_deferred
from .rows import RowContext, counter_verdict, failed_row, iteration_rows, summary_row, utc_now
from .runner import ConfigRun, Protocol, run_configuration


@dataclass(frozen=True)
class SweepOptions:
    """What to run and how."""
    models: tuple[str, ...]
    quants: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    regimes: tuple[str, ...] = ("eager",)
    protocol: Protocol = Protocol()
    redo: bool = False
    weights_dir: Path | None = None
    weights_mode: str = "auto"
    seed: int = 0


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA (or host) out of memory, however the library reported it."""
    import torch
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def describe(exc: BaseException) -> str:
    """One line for a failed row: out of memory named as such, whatever raised it."""
    return summarize(exc, "out of memory" if is_out_of_memory(exc) else None)


def canonical_model(name: str) -> str:
    spec = models.lookup(name)
    return spec.alias if spec is not None else name


def ordered_quants(quants: tuple[str, ...]) -> list[str]:
    """Unique, the baseline (fp16) first: every other row's delta vs fp16 needs the fp16 row written."""
    unique = list(dict.fromkeys(quants))
    return sorted(unique, key=lambda q: q != BASELINE_QUANT)


@dataclass
class Loaded:
    weights: weights.Weights
    model: Any
    tokenizer: Any
    params_b: float
    load_s: tuple[float, float] = (math.nan, math.nan)
    """When the load began and ended, on the monotonic clock."""


@dataclass
class Sweep:
    """Runs the configurations not yet in the results directory, writing each as it ends."""
    options: SweepOptions
    hardware: Hardware
    store: ResultsDir
    display: Display
    versions: dict[str, str]
    run_file: Path
    run_info: dict[str, Any]
    written: list[ConfigKey] = field(default_factory=list)
    failed: list[ConfigKey] = field(default_factory=list)
    unavailable: list[ConfigKey] = field(default_factory=list)
    skipped: list[ConfigKey] = field(default_factory=list)
    only: frozenset[ConfigKey] | None = None
    """This process's share of the configurations (a rank under torchrun); None: all."""
    # Token ids of the eager run of each (model, quant, batch size), to check the graph's.
    _eager_tokens: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    _bandwidth: roofline.Bandwidth | None = None
    _capability: tuple[int, int] | None = None

    # planning --------------------------------------------------------------------------
    @property
    def device_column(self) -> str:
        return "cpu" if self.hardware.device == "cpu" else "cuda"

    def _done(self, key: ConfigKey) -> bool:
        # Same model, quant, batch size and regime *measured the same way*: a CPU smoke run
        # or another length must not stand in for the real measurement. A regime found
        # unavailable for a configuration is done too (--redo tries it again).
        keys = dict(**key.columns(), device=self.device_column, new_tokens=self.options.protocol.new_tokens)
        return bool(self.store.find(**keys) or self.store.find(status="unavailable", **keys))

    def plan(self) -> list[tuple[str, str, list[tuple[int, str]]]]:
        """(model, quant, (batch size, regime) pairs to run), skipping finished rows unless
        ``redo`` and, with ``only``, other processes' configurations. Eager runs before
        graph, so the graph's tokens can be checked against it."""
        todo = []
        self.skipped = []
        regimes = [r for r in generation.REGIMES if r in self.options.regimes]
        for model in dict.fromkeys(canonical_model(m) for m in self.options.models):
            for quant in ordered_quants(self.options.quants):
                pending = []
                for bs in dict.fromkeys(self.options.batch_sizes):
                    for regime in regimes:
                        key = ConfigKey(model, quant, bs, regime)
                        if self.only is not None and key not in self.only:
                            continue
                        if not self.options.redo and self._done(key):
                            self.skipped.append(key)
                        else:
                            pending.append((bs, regime))
                if pending:
                    todo.append((model, quant, pending))
        return todo

    def pending(self) -> list[ConfigKey]:
        """The configurations :meth:`plan` would run, in order."""
        return [ConfigKey(model, quant, bs, regime) for model, quant, pairs in self.plan() for bs, regime in pairs]

    # running ---------------------------------------------------------------------------
    def run(self) -> None:
        plan = self.plan()
        for key in self.skipped:
            self.display.log(f"skip {key.label()}: already in {self.store.results_csv} (--redo to run again)")
        total = sum(len(b) for _, _, b in plan)
        steps = self.options.protocol.warmup + 1 + self.options.protocol.iterations
        resolved: dict[str, weights.Weights | BaseException] = {}
        with self.display.progress() as progress:
            sweep_task = progress.add_task("configurations", total=total)
            config_task = progress.add_task("", total=steps, visible=False)
            for model, quant, batch_sizes in plan:
                if model not in resolved:
                    resolved[model] = self._resolve(model)
                self._run_model_quant(model, quant, batch_sizes, resolved[model], progress, sweep_task, config_task)

    def _resolve(self, model: str) -> weights.Weights | BaseException:
        try:
            resolved = weights.resolve(model, weights_dir=self.options.weights_dir, device=self.hardware.device,
                                       seed=self.options.seed, mode=self.options.weights_mode, log=self.display.log)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - recorded as failed rows, the sweep goes on
            self.display.warn(f"{model}: no weights: {describe(exc)}")
            exc.__traceback__ = None  # kept for its message only: free what it pinned
            self._free()
            return exc
        self.display.log(f"{model}: {resolved.kind} weights ({resolved.note})")
        return resolved

    def _context(self, model: str, quant: str, batch_size: int, regime: str, loaded: Loaded | None,
                 prompt: generation.Prompt | None = None, model_id: str = "") -> RowContext:
        gpu = self.hardware.gpu
        floor = None
        if loaded is not None and prompt is not None:
            floor = roofline.decode_floor(loaded.model, batch_size, prompt.prompt_tokens,
                                          self.options.protocol.new_tokens, self.bandwidth)
        return RowContext(
            model=model, model_id=loaded.weights.model_id if loaded else model_id, quant=quant,
            batch_size=batch_size, regime=regime, floor=floor, new_tokens=self.options.protocol.new_tokens,
            iterations=self.options.protocol.iterations, device=self.device_column,
            gpu_name=gpu.name if gpu else "", gpu_uuid=gpu.uuid if gpu else "", driver=self.hardware.driver,
            versions=self.versions, params_b=loaded.params_b if loaded else math.nan,
            weights=loaded.weights.kind if loaded else "",
            prompt_tokens=prompt.prompt_tokens if prompt else None,
            prompt_tokens_source=prompt.source if prompt else "")

    def _load(self, resolved: weights.Weights, quant: str) -> Loaded:
        started = time.monotonic()
        model = weights.load_model(resolved, quant, self.hardware.device)
        tokenizer = weights.load_tokenizer(resolved)
        params = (models.spec_parameter_count(resolved.spec.alias) if resolved.spec is not None
                  else models.parameter_count(weights.config_of(resolved)))
        self.display.log(f"{resolved.model} {quant}: loaded in {time.monotonic() - started:.1f} s "
                         f"({params:,} parameters, "
                         f"{'tokenizer' if tokenizer is not None else 'no tokenizer: prompt of estimated length'})")
        return Loaded(resolved, model, tokenizer, params / 1e9, (started, time.monotonic()))

    @property
    def capability(self) -> tuple[int, int] | None:
        """The generating GPU's compute capability (None on the CPU or if CUDA cannot say)."""
        if self._capability is None and self.hardware.device != "cpu":
            import torch
            try:
                major, minor = torch.cuda.get_device_capability(self.hardware.device)
                self._capability = (int(major), int(minor))
            except Exception:  # noqa: BLE001 - unknown: every scheme is tried
                return None
        return self._capability

    def _unavailable(self, model: str, quant_name: str, batch_sizes: list[tuple[int, str]], model_id: str,
                     kind: str, progress: Any, sweep_task: Any) -> list[tuple[int, str]]:
        """Records an ``unavailable`` row for each (batch size, regime) that the scheme cannot
        run on this device; returns the others."""
        runnable = []
        for bs, regime in batch_sizes:
            reason = quant_schemes.unavailable_reason(quant_name, regime, bs, self.hardware.device, self.capability)
            if not reason:
                runnable.append((bs, regime))
                continue
            self.display.warn(f"{model} {quant_name} bs={bs} {regime}: unavailable: {reason}")
            ctx = replace(self._context(model, quant_name, bs, regime, None, model_id=model_id), weights=kind)
            self._record_failure(ctx, reason, status="unavailable")
            progress.advance(sweep_task)
        return runnable

    @property
    def bandwidth(self) -> roofline.Bandwidth:
        """The GPU's peak memory bandwidth (read once)."""
        if self._bandwidth is None:
            gpu = self.hardware.gpu
            self._bandwidth = (roofline.peak_bandwidth(self.hardware.energy.nvml_index, gpu.name if gpu else "",
                                                       self.hardware.energy.nvml_library)
                               if self.hardware.device != "cpu" else roofline.Bandwidth(math.nan, "unknown"))
        return self._bandwidth

    def _run_model_quant(self, model: str, quant: str, batch_sizes: list[tuple[int, str]],
                         resolved: weights.Weights | BaseException, progress: Any, sweep_task: Any,
                         config_task: Any) -> None:
        if isinstance(resolved, BaseException):
            spec = models.lookup(model)
            model_id = (spec.hf_id if spec is not None else None) or model
            for bs, regime in batch_sizes:
                self._record_failure(self._context(model, quant, bs, regime, None, model_id=model_id),
                                     f"weights: {describe(resolved)}")
                progress.advance(sweep_task)
            return
        batch_sizes = self._unavailable(model, quant, batch_sizes, resolved.model_id, resolved.kind, progress,
                                        sweep_task)
        if not batch_sizes:
            return  # nothing this scheme can run here: the model is not loaded for it
        loaded = None
        try:
            progress.update(config_task, description=f"{model} {quant}: loading", visible=True, completed=0)
            loaded = self._load(resolved, quant)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            self.display.warn(f"{model} {quant}: loading failed: {describe(exc)}")
            if not is_out_of_memory(exc):
                self.display.log(traceback.format_exc())
            for bs, regime in batch_sizes:
                ctx = replace(self._context(model, quant, bs, regime, None, model_id=resolved.model_id),
                              weights=resolved.kind)
                self._record_failure(ctx, f"loading: {describe(exc)}")
                progress.advance(sweep_task)
        if loaded is None:
            self._free()  # outside the except block: its traceback pins the failed tensors
            return
        try:
            for bs, regime in batch_sizes:
                self._run_one(model, quant, bs, regime, loaded, progress, config_task)
                progress.advance(sweep_task)
        finally:
            loaded.model = None
            del loaded
            self._free()

    def _run_one(self, model: str, quant: str, batch_size: int, regime: str, loaded: Loaded, progress: Any,
                 config_task: Any) -> None:
        label = f"{model} {quant} bs={batch_size} {regime}"
        progress.update(config_task, description=label, completed=0, visible=True)
        def step(what: str) -> None:
            progress.update(config_task, description=f"{label}: {what}", advance=1)
        prompt, run, unavailable = None, None, ""
        # Where the configuration's time went, on the meter's clock (the run file's timeline).
        marks = {"load": list(loaded.load_s), "begin": time.monotonic()}
        try:
            prompt = generation.build_prompt(loaded.model, loaded.tokenizer, loaded.weights.spec,
                                             batch_size, seed=self.options.seed)
            generate, notes = self._generator(regime, loaded.model, prompt)
            marks["prepared"] = time.monotonic()
            run = run_configuration(generate, self.options.protocol, self.hardware.energy,
                                    synchronize=self._synchronize(), step=step)
            marks["measured"] = time.monotonic()
            run.notes.extend(notes)
        except KeyboardInterrupt:
            raise
        except generation.GraphUnavailableError as exc:
            unavailable = f"{regime} unavailable: {exc}"
        except Exception as exc:  # noqa: BLE001
            self.display.warn(f"{label}: failed: {describe(exc)}")
            if not is_out_of_memory(exc):
                self.display.log(traceback.format_exc())
            self._record_failure(self._context(model, quant, batch_size, regime, loaded, prompt), describe(exc),
                                 marks=marks)
        if unavailable:
            self.display.warn(f"{label}: {unavailable}")
            self._record_failure(self._context(model, quant, batch_size, regime, loaded, prompt), unavailable,
                                 status="unavailable", marks=marks)
        if run is None:
            self._free()  # outside the except block: its traceback pins the failed tensors
            return
        self._check_tokens(model, quant, batch_size, regime, run)
        self._record(self._context(model, quant, batch_size, regime, loaded, prompt), run, label, marks)
        run.token_ids = None
        self._free()  # a graph's memory pool and static cache go with its decoder

    def _generator(self, regime: str, model: Any, prompt: generation.Prompt
                   ) -> tuple[Callable[[int], generation.Timing], list[str]]:
        """``generate(new_tokens) -> Timing`` in the regime, and what its rows should note; the
        graph is captured here, before the meters start."""
        stream = self._stream()
        if regime == "eager":
            return (lambda n: generation.generate(model, prompt, n, stream)), []
        protocol = self.options.protocol
        tokens = max(protocol.new_tokens, protocol.warmup_tokens if protocol.warmup else 1)
        decoder = generation.StaticDecoder(model, prompt, tokens, capture=self.hardware.device != "cpu",
                                           compile=regime == "compiled")
        return (lambda n: decoder.generate(n, stream)), decoder.notes

    def _check_tokens(self, model: str, quant: str, batch_size: int, regime: str, run: ConfigRun) -> None:
        """Both regimes must generate the same tokens from the same weights: the graph's are
        compared with the eager run's of this sweep, and the result noted in the row."""
        key = (model, quant, batch_size)
        ids = run.token_ids.cpu() if run.token_ids is not None else None
        if regime == "eager":
            self._eager_tokens[key] = ids
            return
        eager = self._eager_tokens.get(key)
        if ids is None or eager is None:
            return
        parting = generation.first_difference(eager, ids) if eager.shape == ids.shape else None
        run.same_tokens_as_eager = eager.shape == ids.shape and parting is None
        if not run.same_tokens_as_eager:
            where = f" from token {parting}" if parting is not None else ""
            run.notes.append(f"tokens differ from the eager regime's{where}")

    # writing ---------------------------------------------------------------------------
    def _record(self, ctx: RowContext, run: ConfigRun, label: str, marks: dict[str, Any] | None = None) -> None:
        with interrupts_deferred():  # this configuration's files are written whole or not at all
            npz, reference_csv = self.store.trace_paths(ctx.model, ctx.quant, ctx.batch_size, ctx.regime)
            if run.meter is not None:
                run.meter.save(npz)
            if run.reference is not None:
                run.reference.save_csv(reference_csv)
            rows = iteration_rows(ctx, run)
            fp16 = self.store.find(model=ctx.model, quant=BASELINE_QUANT, batch_size=ctx.batch_size,
                                   regime=ctx.regime, device=ctx.device, gpu_name=ctx.gpu_name,
                                   gpu_uuid=ctx.gpu_uuid, new_tokens=ctx.new_tokens)
            row = summary_row(ctx, run, rows, fp16[-1] if fp16 else None,
                              self.store.relative(npz) if run.meter is not None else "")
            self.store.append_iterations(rows)
            self.store.append_result(row)
            self.written.append(ConfigKey(ctx.model, ctx.quant, ctx.batch_size, ctx.regime))
            self._note_run(ctx, "ok", run=run, marks=marks)
        for note in run.all_notes:
            self.display.warn(f"{label}: {note}")
        self.display.log(_one_line(label, row))

    def _record_failure(self, ctx: RowContext, error: str, status: str = "failed",
                        marks: dict[str, Any] | None = None) -> None:
        """A row without measurements: ``failed`` (an error), or ``unavailable`` (the regime
        cannot run this configuration; not an error of the sweep)."""
        with interrupts_deferred():
            self.store.append_result(failed_row(ctx, error, status))
            (self.failed if status == "failed" else self.unavailable).append(
                ConfigKey(ctx.model, ctx.quant, ctx.batch_size, ctx.regime))
            self._note_run(ctx, status, error=error, marks=marks)

    def _note_run(self, ctx: RowContext, status: str, run: ConfigRun | None = None, error: str = "",
                  marks: dict[str, Any] | None = None) -> None:
        """Adds the configuration to the run file. ``marks``: monotonic seconds at which its
        model's load began and ended, it began, its generator was ready (graph captured) and
        its measuring ended; the recording ends at ``written``."""
        entry: dict[str, Any] = {"model": ctx.model, "quant": ctx.quant, "batch_size": ctx.batch_size,
                                 "regime": ctx.regime, "status": status, "finished_utc": utc_now()}
        if marks is not None:
            entry["monotonic_s"] = {**marks, "written": time.monotonic()}
        if error:
            entry["error"] = error
        if run is not None:
            entry["notes"] = run.all_notes
            entry["idle_window_s"] = run.idle_window_s
            entry["meter"] = run.meter.report() if run.meter is not None else None
            entry["reference"] = ({"samples": len(run.reference.samples_ns()[0]), "errors": run.reference.errors,
                                   "last_error": run.reference.last_error, "interval_s": run.reference.interval_s}
                                  if run.reference is not None else None)
        self.run_info.setdefault("configurations", []).append(entry)
        self.store.write_json(self.run_file, self.run_info)

    # torch helpers ---------------------------------------------------------------------
    def _stream(self) -> Any:
        if self.hardware.device == "cpu":
            return None
        import torch
        return torch.cuda.current_stream(self.hardware.device)

    def _synchronize(self) -> Callable[[], None]:
        if self.hardware.device == "cpu":
            return lambda: None
        import torch
        device = self.hardware.device
        return lambda: torch.cuda.synchronize(device)

    def _free(self) -> None:
        gc.collect()
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _one_line(label: str, row: dict[str, Any]) -> str:
    def f(key: str, digits: int = 0) -> str:
        return fmt.grouped(row.get(key), digits)
    check = counter_verdict(row.get("native_vs_counter_pct"), row.get("native_vs_counter_s"))
    return (f"{label}: {f('throughput_tok_s_mean', 2)} tok/s, {f('energy_j_per_1k_mean')} J/1k native "
            f"({row.get('method')}), net {f('energy_net_j_per_1k_mean')}, ref {f('ref_energy_j_per_1k_mean')}, "
            f"{check}")
