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

from .. import generation, models, weights
from .display import Display
from .environment import Hardware
from .results import ResultsDir, interrupts_deferred
from .rows import RowContext, failed_row, iteration_row, summary_row, utc_now
from .runner import ConfigRun, Protocol, run_configuration


@dataclass(frozen=True)
class SweepOptions:
    """What to run and how."""
    models: tuple[str, ...]
    quants: tuple[str, ...]
    batch_sizes: tuple[int, ...]
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
    kind = "out of memory" if is_out_of_memory(exc) else type(exc).__name__
    text = " ".join(str(exc).split())
    return f"{kind}: {text[:300]}" if text else kind


def canonical_model(name: str) -> str:
    spec = models.lookup(name)
    return spec.alias if spec is not None else name


def ordered_quants(quants: tuple[str, ...]) -> list[str]:
    """Unique, fp16 first: every other row's delta vs fp16 needs the fp16 row written."""
    unique = list(dict.fromkeys(quants))
    return sorted(unique, key=lambda q: q != "fp16")


@dataclass
class Loaded:
    weights: weights.Weights
    model: Any
    tokenizer: Any
    params_b: float


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
    written: list[tuple[str, str, int]] = field(default_factory=list)
    failed: list[tuple[str, str, int]] = field(default_factory=list)
    skipped: list[tuple[str, str, int]] = field(default_factory=list)

    # planning --------------------------------------------------------------------------
    @property
    def device_column(self) -> str:
        return "cpu" if self.hardware.device == "cpu" else "cuda"

    def _done(self, model: str, quant: str, batch_size: int) -> bool:
        # Same model, quant and batch size *measured the same way*: a CPU smoke run or
        # another length must not stand in for the real measurement.
        return bool(self.store.find(model=model, quant=quant, batch_size=batch_size,
                                    device=self.device_column, new_tokens=self.options.protocol.new_tokens))

    def plan(self) -> list[tuple[str, str, list[int]]]:
        """(model, quant, batch sizes to run), skipping finished rows unless ``redo``."""
        todo = []
        for model in dict.fromkeys(canonical_model(m) for m in self.options.models):
            for quant in ordered_quants(self.options.quants):
                pending = []
                for bs in dict.fromkeys(self.options.batch_sizes):
                    if not self.options.redo and self._done(model, quant, bs):
                        self.skipped.append((model, quant, bs))
                    else:
                        pending.append(bs)
                if pending:
                    todo.append((model, quant, pending))
        return todo

    # running ---------------------------------------------------------------------------
    def run(self) -> None:
        plan = self.plan()
        for model, quant, bs in self.skipped:
            self.display.log(f"skip {model} {quant} bs={bs}: already in {self.store.results_csv} (--redo to run again)")
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

    def _context(self, model: str, quant: str, batch_size: int, loaded: Loaded | None,
                 prompt: generation.Prompt | None = None, model_id: str = "") -> RowContext:
        gpu = self.hardware.gpu
        return RowContext(
            model=model, model_id=loaded.weights.model_id if loaded else model_id, quant=quant,
            batch_size=batch_size, new_tokens=self.options.protocol.new_tokens,
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
        return Loaded(resolved, model, tokenizer, params / 1e9)

    def _run_model_quant(self, model: str, quant: str, batch_sizes: list[int],
                         resolved: weights.Weights | BaseException, progress: Any, sweep_task: Any,
                         config_task: Any) -> None:
        if isinstance(resolved, BaseException):
            spec = models.lookup(model)
            model_id = (spec.hf_id if spec is not None else None) or model
            for bs in batch_sizes:
                self._record_failure(self._context(model, quant, bs, None, model_id=model_id),
                                     f"weights: {describe(resolved)}")
                progress.advance(sweep_task)
            return
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
            for bs in batch_sizes:
                ctx = replace(self._context(model, quant, bs, None, model_id=resolved.model_id),
                              weights=resolved.kind)
                self._record_failure(ctx, f"loading: {describe(exc)}")
                progress.advance(sweep_task)
        if loaded is None:
            self._free()  # outside the except block: its traceback pins the failed tensors
            return
        try:
            for bs in batch_sizes:
                self._run_one(model, quant, bs, loaded, progress, config_task)
                progress.advance(sweep_task)
        finally:
            loaded.model = None
            del loaded
            self._free()

    def _run_one(self, model: str, quant: str, batch_size: int, loaded: Loaded, progress: Any,
                 config_task: Any) -> None:
        label = f"{model} {quant} bs={batch_size}"
        progress.update(config_task, description=label, completed=0, visible=True)
        def step(what: str) -> None:
            progress.update(config_task, description=f"{label}: {what}", advance=1)
        prompt, run = None, None
        try:
            prompt = generation.build_prompt(loaded.model, loaded.tokenizer, loaded.weights.spec,
                                             batch_size, seed=self.options.seed)
            run = run_configuration(loaded.model, prompt, self.options.protocol, self.hardware.energy,
                                    stream=self._stream(), synchronize=self._synchronize(), step=step)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            self.display.warn(f"{label}: failed: {describe(exc)}")
            if not is_out_of_memory(exc):
                self.display.log(traceback.format_exc())
            self._record_failure(self._context(model, quant, batch_size, loaded, prompt), describe(exc))
        if run is None:
            self._free()  # outside the except block: its traceback pins the failed tensors
            return
        self._record(self._context(model, quant, batch_size, loaded, prompt), run, label)

    # writing ---------------------------------------------------------------------------
    def _record(self, ctx: RowContext, run: ConfigRun, label: str) -> None:
        with interrupts_deferred():  # this configuration's files are written whole or not at all
            npz, reference_csv = self.store.trace_paths(ctx.model, ctx.quant, ctx.batch_size)
            if run.meter is not None:
                run.meter.save(npz)
            if run.reference is not None:
                run.reference.save_csv(reference_csv)
            iteration_rows = [iteration_row(ctx, run, it) for it in run.iterations]
            fp16 = self.store.find(model=ctx.model, quant="fp16", batch_size=ctx.batch_size,
                                   device=ctx.device, gpu_name=ctx.gpu_name, new_tokens=ctx.new_tokens)
            row = summary_row(ctx, run, iteration_rows, fp16[-1] if fp16 else None,
                              self.store.relative(npz) if run.meter is not None else "")
            self.store.append_iterations(iteration_rows)
            self.store.append_result(row)
            self.written.append((ctx.model, ctx.quant, ctx.batch_size))
            self._note_run(ctx, "ok", run=run)
        for note in run.all_notes:
            self.display.warn(f"{label}: {note}")
        self.display.log(_one_line(label, row))

    def _record_failure(self, ctx: RowContext, error: str) -> None:
        with interrupts_deferred():
            self.store.append_result(failed_row(ctx, error))
            self.failed.append((ctx.model, ctx.quant, ctx.batch_size))
            self._note_run(ctx, "failed", error=error)

    def _note_run(self, ctx: RowContext, status: str, run: ConfigRun | None = None, error: str = "") -> None:
        entry: dict[str, Any] = {"model": ctx.model, "quant": ctx.quant, "batch_size": ctx.batch_size,
                                 "status": status, "finished_utc": utc_now()}
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
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "-"
        return f"{round(value, digits) + 0.0:,.{digits}f}"  # + 0.0: no "-0"
    return (f"{label}: {f('throughput_tok_s_mean', 2)} tok/s, {f('energy_j_per_1k_mean')} J/1k native "
            f"({row.get('method')}), net {f('energy_net_j_per_1k_mean')}, ref {f('ref_energy_j_per_1k_mean')}")
