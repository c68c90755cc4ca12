"""The Python API: `gradsight.inspect(model, optimizer)` and `gradsight.watch(model, optimizer, every=N)`.

Both take probe snapshots in this process and classify them as the debugger front end does.
A snapshot reads every parameter and gradient once (one `torch._foreach_norm` pass per device
and dtype) and changes nothing in the model or the optimizer.
"""

from __future__ import annotations

import functools
import logging
import weakref
from typing import Any

from gradsight.runtime import distributed, history
from gradsight.runtime.check import CheckReport, check_model, locate_findings, take_snapshot

logger = logging.getLogger("gradsight")

# `watch` counts dead units (GS911) during the last every // 10 optimizer steps before each
# check (at least 1, at most this many), with a forward hook on each ReLU-type activation of the
# model. So the hook runs on at most a tenth of the steps once `every` is 10 or more.
DEAD_UNITS_MAX_WINDOW_STEPS = 5

# The last snapshot of each model inspected, to compare the next `inspect` of it with.
_previous_snapshots: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def inspect(model: Any, optimizer: Any = None) -> CheckReport:
    """Check which layers of `model` learn, from their gradients and the optimizer's groups.

    Call it after `loss.backward()`, before `optimizer.zero_grad()`. `optimizer` is an optimizer,
    a list of optimizers or None (then learning rates and optimizer membership are not checked).
    A second call on the same model compares with the first, which finds layers that did not
    change across optimizer steps and frozen layers that did. Under torch.distributed, call it
    on every rank at the same point: the statistics of all ranks are combined with one
    collective operation. Returns a `CheckReport`: `str()`
    is a table, `.to_dict()` the JSON form, `.findings` the findings.
    """
    optimizers = _as_list(optimizer)
    snapshot, rank_findings = _snapshot(model, optimizers)
    previous = _previous_snapshots.get(model)
    _previous_snapshots[model] = snapshot
    check = check_model(model, snapshot, previous, [], check_number=2 if previous else 1, front_end="api")
    notes = []
    if not optimizers:
        notes.append("No optimizer was given, so learning rates and optimizer membership were not checked.")
    return CheckReport([check], locate_findings(check, rank_findings), notes=notes)


def _snapshot(model: Any, optimizers: list[Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Snapshot `model`; under torch.distributed, combine the statistics of all ranks (one collective)."""
    model = _unwrapped(model)
    snapshot = take_snapshot(model, optimizers)
    if distributed.is_distributed():
        return snapshot, distributed.combine_across_ranks(snapshot)
    return snapshot, []


def _unwrapped(model: Any) -> Any:
    """Return the module inside a DistributedDataParallel wrapper, to name layers without "module."."""
    if type(model).__name__ == "DistributedDataParallel" and hasattr(model, "module"):
        return model.module
    return model


class WatchHandle:
    """A running `watch`: `.report` is the latest check's report, `.remove()` stops watching."""

    def __init__(self, model: Any, optimizers: list[Any], every: int) -> None:
        self.every = every
        self.steps = 0
        self.checks = 0
        self.report: CheckReport | None = None
        self._model = weakref.ref(model)
        self._optimizers = [weakref.ref(optimizer) for optimizer in optimizers]
        self._previous: dict[str, Any] | None = None
        self._previous_steps = 0
        self._logged: set[tuple[str, str]] = set()
        self._handles = [optimizer.register_step_post_hook(self._after_step) for optimizer in optimizers[:1]]
        activations = history.activation_modules(_unwrapped(model))
        self._activations = [(name, weakref.ref(module)) for name, module in activations]
        self._dead_units = history.DeadUnitTracker()
        self._activation_handles: list[Any] = []
        self._window_steps = max(1, min(DEAD_UNITS_MAX_WINDOW_STEPS, every // 10))
        self._update_activation_hooks()

    def remove(self) -> None:
        """Stop watching: remove the optimizer hook and the activation hooks."""
        for handle in self._handles + self._activation_handles:
            handle.remove()
        self._handles.clear()
        self._activation_handles.clear()

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            model = self._model()
            optimizers = [opt for opt in (ref() for ref in self._optimizers) if opt is not None]
            if model is None:
                self.remove()
                return
            try:
                self._check(model, optimizers)
            except Exception:  # noqa: BLE001 - a failed check must not stop the user's training
                logger.exception("gradsight: the check after optimizer step %d failed", self.steps)
        self._update_activation_hooks()

    def _check(self, model: Any, optimizers: list[Any]) -> None:
        snapshot, rank_findings = _snapshot(model, optimizers)
        self.checks += 1
        steps = [self._previous_steps, self.steps] if self._previous is not None else [self.steps]
        check = check_model(
            model, snapshot, self._previous, steps, check_number=self.checks, checked_after_step=True, front_end="api"
        )
        self._previous, self._previous_steps = snapshot, self.steps
        dead_units = self._dead_units.read()
        self._dead_units.clear()
        dead_unit_findings = history.dead_unit_findings(_unwrapped(model), check, list(dead_units.items()))
        self.report = CheckReport([check], locate_findings(check, rank_findings) + dead_unit_findings)
        if distributed.rank() == 0:
            self._log(self.report)

    def _update_activation_hooks(self) -> None:
        """Hook the activations during the last `_window_steps` steps before each check only."""
        steps_to_check = self.every - self.steps % self.every
        in_window = bool(self._handles) and steps_to_check <= self._window_steps
        if in_window and not self._activation_handles:
            for name, module_ref in self._activations:
                module = module_ref()
                if module is not None:
                    hook = functools.partial(self._observe_activation, name)
                    self._activation_handles.append(module.register_forward_hook(hook))
        elif not in_window and self._activation_handles:
            for handle in self._activation_handles:
                handle.remove()
            self._activation_handles.clear()

    def _observe_activation(self, name: str, module: Any, args: Any, output: Any) -> None:
        self._dead_units.observe(name, module, output)

    def _log(self, report: CheckReport) -> None:
        """Log each finding when it appears, and once more when it is gone, not at every check."""
        current = {(finding["code"], finding["layer"]): finding for finding in report.findings}
        for key, finding in current.items():
            if key in self._logged:
                continue
            level = logging.INFO if finding["severity"] == "information" else logging.WARNING
            place = f"{finding['path']}:{finding['line']}: " if finding["path"] else ""
            logger.log(level, "step %d: %s%s %s", self.steps, place, finding["code"], finding["message"])
        for code, layer in self._logged - set(current):
            logger.info("step %d: %s on %s is no longer found", self.steps, code, layer or "the model")
        self._logged = set(current)


def watch(model: Any, optimizer: Any, every: int = 100) -> WatchHandle:
    """Check `model` after every `every`-th step of `optimizer` and log new findings.

    Findings go to the `gradsight` logger: warnings and errors at WARNING, information at INFO,
    each once when it appears. Checks after the first compare with the previous check, so
    layers that did not change across the `every` steps are found. During the last `every // 10`
    steps before each check (1 to 5), forward hooks on the model's ReLU, ReLU6, Hardsigmoid and
    Hardswish modules count the units that output 0 for every input (GS911).
    Under torch.distributed, call it on every rank: each check combines the ranks' statistics
    with one collective operation, and rank 0 logs. A check costs about one snapshot of the
    model (see docs/benchmarks.md for measured overhead), and a forward hook one reduction of
    the activation's output over the batch, with no device sync. Returns a
    handle; call `handle.remove()` to stop.
    """
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be a positive number of optimizer steps, not {every!r}")
    optimizers = _as_list(optimizer)
    if not optimizers:
        raise ValueError("watch needs the optimizer that trains the model: its steps trigger the checks")
    return WatchHandle(model, optimizers, every)


def _as_list(optimizer: Any) -> list[Any]:
    if optimizer is None:
        return []
    return list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
