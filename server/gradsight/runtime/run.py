"""`gradsight run`: run a training script in this process and report which layers learn.

The script runs unchanged, under hooks that this module installs and removes again:

- a wrapper around `torch.optim.Optimizer.__init__` and global optimizer step hooks, which find
  the optimizers and count their steps. An optimizer built again over the same parameters (in
  the training loop) replaces the earlier one, and the report counts the instances;
- global module forward hooks, which find the models: modules called while no other module
  is running (a `DistributedDataParallel` wrapper is replaced by the module it wraps);
- wrappers around `torch.Tensor.backward` and `torch.autograd.backward`. Before the backward
  pass they walk the loss's graph to find the leaf tensors it reaches. After it, they take a
  probe snapshot of each model that the pass reached, once per optimizer step;
- for the findings that need many steps (see `history.py`): the forward hook also feeds the
  outputs of ReLU-type activations to a dead-unit counter, a wrapper around `GradScaler.step`
  records which steps the scaler skipped, and a wrapper around `clip_grad_norm_` records the
  total norm against `max_norm`.

Under `torch.distributed`, each snapshot's statistics are combined across the ranks with one
collective operation (see `distributed.py`), and only rank 0 prints the report.

The first and the latest snapshot of each model are compared, so layers that did not change
across steps (`unchanged`) and frozen layers that did (`frozen-but-changing`) are found. After
`steps` steps of one optimizer (or `steps` backward passes when nothing steps) a hook raises
`StopScript`, which ends the script; its `finally` blocks still run. Steps that a GradScaler
skips do not count, but the script also stops after `history.SKIPPED_STEPS_STOP` of them (or
`steps`, if larger).
"""

from __future__ import annotations

import ast
import functools
import math
import os
import runpy
import sys
import traceback
from dataclasses import dataclass, field
from typing import Any

from gradsight.runtime import distributed, history, probe
from gradsight.runtime.check import CheckReport, check_model, finding_entry, locate_findings, take_snapshot

DEFAULT_STEPS = 5


class StopScript(BaseException):
    """Raised from a hook to end the user's script once enough steps were seen.

    A BaseException, so that the script's `except Exception:` blocks let it through.
    """


@dataclass
class _ModelRecord:
    module: Any
    wrapper: Any = None
    first: dict[str, Any] | None = None
    latest: dict[str, Any] | None = None
    first_step: int = 0
    latest_step: int = 0
    due: bool = True
    rank_findings: list[dict[str, Any]] = field(default_factory=list)
    # FSDP2 runs forward and backward on unsharded copies of the registered (sharded) parameters,
    # so the loss graph reaches those copies. These are their ids, taken after each FSDP module's
    # forward.
    unsharded_ids: set[int] = field(default_factory=set)


@dataclass
class _OptimizerRecord:
    """One optimizer, and how often the script built it anew over the same parameters.

    An optimizer of the same type over the same parameters replaces the earlier one, which the
    recorder then drops, so a script that builds its optimizer in the loop keeps one record.
    """

    optimizer: Any
    instances: int = 1
    steps: int = 0


@dataclass
class _LeafRecord:
    tensor: Any
    passes: int = 0
    last_pass: int = -1


@dataclass
class RunOutcome:
    """The way the script ended (`steps`, `backward`, `skipped`, `end`, `exit` or `exception`) and its exit code or error.

    `inside` is the call that the script was in when it raised (`backward()`) or was stopped
    (`optimizer.step()`, whose closure ran the backward passes), or None.
    """

    ended_by: str
    exit_code: int | None = None
    error: BaseException | None = None
    inside: str | None = None


class TrainingRecorder:
    """The hooks of `gradsight run`: find models and optimizers, walk loss graphs, take snapshots."""

    def __init__(self, max_steps: int = DEFAULT_STEPS) -> None:
        import torch

        self.torch = torch
        self.max_steps = max_steps
        self.optimizers: list[Any] = []
        self._optimizer_records: dict[int, _OptimizerRecord] = {}
        self.backward_count = 0
        self.models: dict[int, _ModelRecord] = {}
        self.leaves: dict[int, _LeafRecord] = {}
        self.namespace: dict[str, Any] = {}
        self.rank = 0
        self.optimizer_step_calls = 0
        # optimizer.step() calls that have begun and not finished. NOTE: a step that raises an
        # exception, which the script catches, stays counted.
        self._steps_in_progress = 0
        self.stopped_inside_step = False
        self.skipped_steps = 0
        # The exception that the latest failed backward pass raised, and whether every parameter
        # found then had requires_grad=False.
        self.backward_error: BaseException | None = None
        self.all_frozen_at_backward_error = False
        self.dead_units = history.DeadUnitTracker()
        self.activations: dict[int, Any] = {}
        self.scalers = history.ScalerHistory()
        self.clipping = history.ClipHistory()
        # Tensors returned by `GradScaler.scale` since the last backward pass, with their scaler.
        self._scaled_outputs: list[tuple[Any, Any]] = []
        self._activation_types = history.activation_types()
        self._depth = 0
        self._outer_record: _ModelRecord | None = None
        self._in_backward = False
        self._handles: list[Any] = []
        self._patches: list[tuple[Any, str, Any]] = []

    # Installing and removing the hooks.

    def install(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        torch = self.torch
        module_hooks = torch.nn.modules.module
        self._handles.append(module_hooks.register_module_forward_pre_hook(self._before_forward))
        self._handles.append(module_hooks.register_module_forward_hook(self._after_forward, always_call=True))
        self._handles.append(register_optimizer_step_pre_hook(self._before_step))
        self._handles.append(register_optimizer_step_post_hook(self._after_step))

        recorder = self
        original_init = torch.optim.Optimizer.__init__

        @functools.wraps(original_init)
        def optimizer_init(optimizer, *args, **kwargs):
            original_init(optimizer, *args, **kwargs)
            recorder._add_optimizer(optimizer, replace=True)

        self._patch(torch.optim.Optimizer, "__init__", optimizer_init)

        original_tensor_backward = torch.Tensor.backward

        @functools.wraps(original_tensor_backward)
        def tensor_backward(tensor, *args, **kwargs):
            return recorder._around_backward([tensor], lambda: original_tensor_backward(tensor, *args, **kwargs))

        self._patch(torch.Tensor, "backward", tensor_backward)

        original_backward = torch.autograd.backward

        @functools.wraps(original_backward)
        def autograd_backward(tensors, *args, **kwargs):
            roots = list(tensors) if isinstance(tensors, (list, tuple)) else [tensors]
            return recorder._around_backward(roots, lambda: original_backward(tensors, *args, **kwargs))

        self._patch(torch.autograd, "backward", autograd_backward)
        self._install_history_hooks()

    def _install_history_hooks(self) -> None:
        """Wrap `GradScaler.step` (GS912), `GradScaler.scale` (to unscale gradient statistics) and `clip_grad_norm_` (GS913)."""
        torch = self.torch
        recorder = self
        grad_scaler = torch.amp.grad_scaler.GradScaler
        original_scaler_step = grad_scaler.step

        @functools.wraps(original_scaler_step)
        def scaler_step(scaler, optimizer, *args, **kwargs):
            def call():
                return original_scaler_step(scaler, optimizer, *args, **kwargs)

            if not scaler.is_enabled():
                return call()  # A disabled scaler calls optimizer.step() and never skips.
            return recorder._around_scaler_step(scaler, optimizer, history.call_site(sys._getframe(1)), call)

        original_scale = grad_scaler.scale

        @functools.wraps(original_scale)
        def scale(scaler, outputs):
            scaled = original_scale(scaler, outputs)
            if scaler.is_enabled():
                tensors = scaled if isinstance(scaled, (list, tuple)) else [scaled]
                recorder._scaled_outputs.extend((tensor, scaler) for tensor in tensors)
            return scaled

        # torch.cuda.amp.GradScaler is a subclass that keeps these methods.
        self._patch(grad_scaler, "step", scaler_step)
        self._patch(grad_scaler, "scale", scale)

        original_clip = torch.nn.utils.clip_grad.clip_grad_norm_

        @functools.wraps(original_clip)
        def clip_grad_norm_(parameters, max_norm, *args, **kwargs):
            total_norm = original_clip(parameters, max_norm, *args, **kwargs)
            recorder.clipping.record(total_norm, max_norm, history.call_site(sys._getframe(1)))
            return total_norm

        # `torch.nn.utils.clip_grad_norm_` is the same function under a second name.
        self._patch(torch.nn.utils.clip_grad, "clip_grad_norm_", clip_grad_norm_)
        self._patch(torch.nn.utils, "clip_grad_norm_", clip_grad_norm_)

    def remove(self) -> None:
        """Remove every hook and restore every patched attribute, in reverse order."""
        for handle in reversed(self._handles):
            handle.remove()
        self._handles.clear()
        for owner, name, original in reversed(self._patches):
            setattr(owner, name, original)
        self._patches.clear()

    def _patch(self, owner: Any, name: str, replacement: Any) -> None:
        self._patches.append((owner, name, owner.__dict__[name]))
        setattr(owner, name, replacement)

    @property
    def steps(self) -> int:
        """Return the steps of the optimizer that stepped most: each of a GAN's optimizers gets about `--steps`.

        An optimizer built again over the same parameters continues the count of the one it replaces.
        """
        return max((record.steps for record in self._optimizer_records.values()), default=0)

    # Hooks.

    def _before_forward(self, module: Any, args: Any) -> None:
        if self._depth == 0:
            self._outer_record = self._add_model(module)
        self._depth += 1

    def _after_forward(self, module: Any, args: Any, output: Any) -> None:
        self._depth = max(0, self._depth - 1)
        if self._outer_record is not None and _is_fully_sharded(module):
            # Global hooks run before the module's own, so FSDP2 has not resharded the module yet
            # and its registered parameters are still the unsharded copies in the loss graph.
            self._outer_record.unsharded_ids.update(
                id(p) for p in module.parameters() if type(p).__name__ != "DTensor"
            )
        if isinstance(module, self._activation_types):
            self.activations[id(module)] = module
            self.dead_units.observe(id(module), module, output)

    def _before_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.optimizer_step_calls += 1
        self._steps_in_progress += 1
        self._add_optimizer(optimizer)

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._steps_in_progress = max(0, self._steps_in_progress - 1)
        self._optimizer_records[id(optimizer)].steps += 1
        for record in self.models.values():
            record.due = True
        if self.steps >= self.max_steps:
            raise StopScript("steps")

    def _around_backward(self, roots: list[Any], call: Any) -> Any:
        if self._in_backward:
            return call()  # Tensor.backward calls torch.autograd.backward: count the pass once.

        self._in_backward = True
        self.namespace = _main_namespace()
        if distributed.is_distributed():
            # Kept for the report, in case the script destroys the process group before it ends.
            self.rank = distributed.rank()
        scaler = next((scaler for tensor, scaler in self._scaled_outputs if any(root is tensor for root in roots)), None)
        self._scaled_outputs.clear()
        try:
            reached = self._record_leaves(roots)
            result = call()
        except Exception as error:
            self.backward_error = error
            self.all_frozen_at_backward_error = self._all_parameters_frozen()
            raise
        finally:
            self._in_backward = False
        self.backward_count += 1
        self._snapshot_reached_models(reached, scaler)
        if not self.steps and not self.scalers.records and self.backward_count >= self.max_steps:
            # Inside step(), the passes come from a closure (LBFGS) and the first step has not finished.
            self.stopped_inside_step = self._steps_in_progress > 0
            raise StopScript("backward")
        return result

    def _all_parameters_frozen(self) -> bool:
        """Return whether the models and optimizers found have parameters, all with requires_grad=False."""
        parameters = [p for record in self.models.values() for p in record.module.parameters()]
        parameters.extend(p for optimizer in self.optimizers for group in optimizer.param_groups for p in group["params"])
        return bool(parameters) and not any(p.requires_grad for p in parameters)

    def _around_scaler_step(self, scaler: Any, optimizer: Any, site: history.CallSite | None, call: Any) -> Any:
        """Run `scaler.step(optimizer)` and record whether it ran `optimizer.step()`."""
        calls_before = self.optimizer_step_calls
        try:
            result = call()
        except StopScript:
            self.scalers.record(scaler, optimizer, True, site)  # Raised by the step hook, so the step ran.
            raise
        stepped = self.optimizer_step_calls > calls_before
        self.scalers.record(scaler, optimizer, stepped, site)
        if not stepped:
            self.skipped_steps += 1
            if self.skipped_steps >= max(self.max_steps, history.SKIPPED_STEPS_STOP):
                raise StopScript("skipped")
        return result

    # Models, optimizers and leaves.

    def _add_model(self, module: Any) -> _ModelRecord | None:
        """Record `module` as a model unless it has no parameters; return its record."""
        wrapper = None
        if type(module).__name__ == "DistributedDataParallel" and hasattr(module, "module"):
            wrapper, module = module, module.module
        if id(module) in self.models:
            return self.models[id(module)]
        if not any(True for _ in module.parameters()) and not self._has_unregistered(module):
            return None  # A loss module or an activation called on its own.
        record = _ModelRecord(module, wrapper)
        self.models[id(module)] = record
        return record

    def _has_unregistered(self, module: Any) -> bool:
        return any(True for _ in probe._unregistered_modules(self.torch, module))

    def _add_optimizer(self, optimizer: Any, replace: bool = False) -> None:
        """Record `optimizer`; with `replace`, in place of an earlier one of its type over the same parameters.

        Forgetting the replaced optimizer lets Python free it and its state, as it would without
        gradsight, and keeps one optimizer per model in the report.
        """
        if any(optimizer is known for known in self.optimizers):
            return
        record = _OptimizerRecord(optimizer)
        if replace:
            replaced = next((known for known in self.optimizers if _same_optimizer_setup(known, optimizer)), None)
            if replaced is not None:
                self.optimizers.remove(replaced)
                earlier = self._optimizer_records.pop(id(replaced))
                record = _OptimizerRecord(optimizer, earlier.instances + 1, earlier.steps)
        self.optimizers.append(optimizer)
        self._optimizer_records[id(optimizer)] = record

    def _record_leaves(self, roots: list[Any]) -> set[int]:
        """Walk the graphs of `roots` and record the leaf tensors that require grad; return their ids."""
        reached: set[int] = set()
        seen: set[int] = set()
        pending = [root.grad_fn for root in roots if getattr(root, "grad_fn", None) is not None]
        while pending:
            node = pending.pop()
            if node is None or id(node) in seen:
                continue
            seen.add(id(node))
            variable = getattr(node, "variable", None)
            if variable is not None:
                reached.add(id(variable))
                record = self.leaves.setdefault(id(variable), _LeafRecord(variable))
                if record.last_pass != self.backward_count:
                    record.passes += 1
                    record.last_pass = self.backward_count
            pending.extend(next_node for next_node, _ in node.next_functions)
        return reached

    def _snapshot_reached_models(self, reached: set[int], scaler: Any = None) -> None:
        """Snapshot each model that is due for a snapshot and whose parameters the pass reached.

        `scaler` is the GradScaler whose scaled loss the pass started from, or None.
        """
        for record in list(self.models.values()):
            if not record.due:
                continue
            parameter_ids = {id(p) for p in record.module.parameters()} | record.unsharded_ids
            parameter_ids.update(id(p) for _, child in probe._unregistered_modules(self.torch, record.module) for p in child.parameters())
            if not parameter_ids & reached:
                continue
            if self._snapshot(record, reached, scaler):
                record.due = False

    def _snapshot(self, record: _ModelRecord, reached: set[int], scaler: Any = None) -> bool:
        """Take and store a snapshot of `record`'s model; return False when it was dropped."""
        optimizers = self._optimizers_for(record, reached)
        snapshot = take_snapshot(record.module, optimizers, self.namespace)
        if scaler is not None and not _unscale_gradients(snapshot, scaler.get_scale()):
            return False  # The scaler skips this step; the next pass is snapshotted instead.
        for optimizer, entry in zip(optimizers, snapshot.get("optimizers") or []):
            entry["instances"] = self._optimizer_records[id(optimizer)].instances
        if record.wrapper is not None:
            names = [name for name, value in self.namespace.items() if value is record.wrapper and not name.startswith("__")]
            snapshot["model"]["names"] = names + snapshot["model"]["names"]
        if distributed.is_distributed():
            self.rank = distributed.rank()
            record.rank_findings = distributed.combine_across_ranks(snapshot)
        if record.first is None:
            record.first, record.first_step = snapshot, self.steps
        else:
            record.latest, record.latest_step = snapshot, self.steps
        return True

    def _optimizers_for(self, record: _ModelRecord, reached: set[int]) -> list[Any]:
        """Return the optimizers that contain the parameters of the record's model.

        When none does but the loss reaches its trainable parameters, return all optimizers, so
        that those parameters are reported as in no optimizer (GS901).
        """
        parameters = [p for p in record.module.parameters()]
        parameter_ids = {id(p) for p in parameters}
        holding = [opt for opt in self.optimizers if _holds_any(opt, parameter_ids)]
        if holding:
            return holding
        if any(p.requires_grad and id(p) in reached for p in parameters) or record.unsharded_ids & reached:
            return list(self.optimizers)
        return []

    # The report.

    def build_report(self, outcome: RunOutcome, script: str, traceback_location: str = "above") -> CheckReport:
        """Build the report of the run; `traceback_location` completes "its traceback is ..." in a note."""
        checks = []
        extra: list[dict[str, Any]] = []
        reached: set[int] = set(self.leaves)
        for record in self.models.values():
            if record.first is None:
                self._snapshot(record, reached)  # Never reached by a loss: one snapshot as it is now.
            assert record.first is not None
            if record.latest is not None:
                check = check_model(record.module, record.latest, record.first, [record.first_step, record.latest_step], [script], 2)
            else:
                check = check_model(record.module, record.first, None, [record.first_step], [script])
            checks.append(check)
            extra.extend(locate_findings(check, record.rank_findings))

        extra.extend(self._history_findings(checks, script))

        notes = self._run_notes(outcome, traceback_location)
        run = {
            "optimizerSteps": self.steps,
            "skippedSteps": self.skipped_steps,
            "backwardPasses": self.backward_count,
            "endedBy": outcome.ended_by,
            "exitCode": outcome.exit_code,
            "rank": self.rank,
        }
        return CheckReport(checks, extra + self._unregistered_leaf_findings(script), notes, run)

    def _history_findings(self, checks: list[Any], script: str) -> list[dict[str, Any]]:
        """Return the findings that need many steps: GS911, GS912 and GS913."""
        findings = []
        dead_units = self.dead_units.read()
        placed: set[int] = set()
        for record, check in zip(self.models.values(), checks):
            named = []
            for name, module in record.module.named_modules():
                if id(module) in dead_units and id(module) not in placed:
                    named.append((name, dead_units[id(module)]))
                    placed.add(id(module))
            findings.extend(history.dead_unit_findings(record.module, check, named))

        for module_id, dead in dead_units.items():
            if module_id in placed or not dead.reported:
                continue
            # An activation module called outside every model found, e.g. `act(model(x))`.
            name = self._name_in_namespace(self.activations[module_id])
            label = name or dead.type_name
            location = _assignment_location(script, name) if name else None
            findings.append(finding_entry("GS911", "warning", history.dead_unit_message(label, dead, None), label, location))

        findings.extend(self.scalers.findings(self._optimizer_name))
        findings.extend(self.clipping.findings(scaler_used=bool(self.scalers.records)))
        return findings

    def _optimizer_name(self, optimizer: Any) -> str:
        return self._name_in_namespace(optimizer) or type(optimizer).__name__

    def _name_in_namespace(self, value: Any) -> str | None:
        """Return the script's global name for `value`, if it has one."""
        return next((key for key, item in self.namespace.items() if item is value and not key.startswith("__")), None)

    def _run_notes(self, outcome: RunOutcome, traceback_location: str) -> list[str]:
        notes = []
        raised_in_backward = outcome.error is not None and outcome.error is self.backward_error
        if raised_in_backward:
            notes.append(
                f"The script raised an exception in backward() (its traceback is {traceback_location}); "
                "the report covers what ran before it."
            )
            if self.all_frozen_at_backward_error and "does not require grad" in str(outcome.error):
                notes.append(
                    "Every parameter had requires_grad=False when backward() raised, so the loss had no "
                    "gradient to compute; call requires_grad_(True) on the layers to train (assigning "
                    "`module.requires_grad = True` only sets a plain attribute of the module)."
                )
        elif self.backward_count == 0:
            notes.append("No backward pass ran, so no gradient was seen.")
        if outcome.inside == "optimizer.step()":
            notes.append(
                "No optimizer step had finished: the script was stopped inside its first optimizer.step() call, "
                "whose closure runs the backward passes (as with LBFGS). The report covers the gradients, and the "
                "weights may already have changed inside that step."
            )
        elif not raised_in_backward and self.backward_count and not self.steps:
            notes.append("No optimizer step ran: the report covers the gradients only, not the updates.")
        notes.extend(self._rebuilt_optimizer_notes())
        if outcome.ended_by == "exception" and not raised_in_backward:
            notes.append(
                f"The script raised an exception (its traceback is {traceback_location}); "
                "the report covers what ran before it."
            )
        elif outcome.ended_by == "exit" and outcome.exit_code:
            notes.append(f"The script called sys.exit({outcome.exit_code}); this is what was seen until then.")
        return notes

    def _rebuilt_optimizer_notes(self) -> list[str]:
        """Return a note for each optimizer that the script built anew before most of its steps."""
        notes = []
        for record in self._optimizer_records.values():
            if record.instances < 2 or record.instances * 2 <= record.steps:
                continue
            type_name = type(record.optimizer).__name__
            name = self._name_in_namespace(record.optimizer)
            label = f"`{name}` ({type_name})" if name else f"The {type_name} optimizer"
            notes.append(
                f"{label} was built anew before most optimizer steps ({record.instances:,} instances for "
                f"{record.steps:,} steps), so its state (momentum, Adam's moment estimates) starts from zero each "
                "time; build the optimizer once, before the training loop."
            )
        return notes

    def _unregistered_leaf_findings(self, script: str) -> list[dict[str, Any]]:
        """GS914 for leaf tensors that the loss reached on two or more backward passes but that
        are neither parameters of a model found nor in any optimizer."""
        known: set[int] = set()
        for record in self.models.values():
            known.update(id(p) for p in record.module.parameters())
            known.update(record.unsharded_ids)
            known.update(id(p) for _, child in probe._unregistered_modules(self.torch, record.module) for p in child.parameters())
            known.update(id(tensor) for _, _, tensor in probe._unregistered_tensors(self.torch, record.module))
        in_optimizer = {id(p) for opt in self.optimizers for group in opt.param_groups for p in group["params"]}

        findings = []
        for leaf_id, record in self.leaves.items():
            # NOTE: a leaf reached on one pass only may be an input with requires_grad=True
            # (saliency maps, adversarial examples), so it takes two passes to count.
            if record.passes < 2 or leaf_id in known or leaf_id in in_optimizer or not record.tensor.requires_grad:
                continue
            name = self._name_in_namespace(record.tensor)
            label = name or f"a tensor of shape {list(record.tensor.shape)}"
            message = (
                f"{label}: a leaf tensor that requires grad receives gradients from the loss but is not a "
                "registered parameter of any model and is in no optimizer, so it never changes; make it an "
                "nn.Parameter attribute of the model, or add it to the optimizer."
            )
            location = _assignment_location(script, name) if name else None
            findings.append(finding_entry("GS914", "error", message, label, location))
        return findings


def _is_fully_sharded(module: Any) -> bool:
    """Return whether FSDP2's `fully_shard` was applied to `module` (False when FSDP was never imported)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    module_type = getattr(fsdp, "FSDPModule", None)
    return module_type is not None and isinstance(module, module_type)


def _unscale_gradients(snapshot: dict[str, Any], scale: float) -> bool:
    """Divide the gradient statistics of a snapshot taken after a GradScaler-scaled pass by `scale`.

    Returns False when the gradients have inf or NaN values: then the scaler skips the step
    (GS912 reports it when that happens on most steps), and the snapshot would report an
    overflow of the scaled gradients as non-finite ones (GS906).
    """
    parameters = snapshot.get("parameters", [])
    # NOTE: under torch.distributed the snapshot is kept, because dropping it on one rank only
    # would leave the other ranks waiting in the collective operation that combines snapshots.
    if not distributed.is_distributed() and any(p.get("gradNan") or p.get("gradInf") for p in parameters):
        return False
    if not math.isfinite(scale) or scale <= 0:
        return True
    for parameter in parameters:
        for key in ("gradNorm", "gradMaxAbs"):
            value = parameter.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                parameter[key] = value / scale
    return True


def _same_optimizer_setup(first: Any, second: Any) -> bool:
    """Return whether two optimizers are of the same type over the same parameters, in the same groups."""
    if type(first) is not type(second) or len(first.param_groups) != len(second.param_groups):
        return False
    return all(
        [id(p) for p in a["params"]] == [id(p) for p in b["params"]]
        for a, b in zip(first.param_groups, second.param_groups)
    )


def _holds_any(optimizer: Any, parameter_ids: set[int]) -> bool:
    return any(id(p) in parameter_ids for group in optimizer.param_groups for p in group["params"])


def _main_namespace() -> dict[str, Any]:
    """Return the globals of the running script; runpy's temporary `__main__` keeps them there."""
    return getattr(sys.modules.get("__main__"), "__dict__", {})


@dataclass
class _Location:
    source: str
    line: int


def _assignment_location(script: str, name: str) -> _Location | None:
    """Return the first line of the script that assigns `name` at module level."""
    try:
        with open(script, encoding="utf-8") as file:
            tree = ast.parse(file.read())
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return _Location(os.path.abspath(script), node.lineno)
    return None


# Running the script.


@dataclass
class RunResult:
    report: CheckReport
    outcome: RunOutcome
    notes: list[str] = field(default_factory=list)


def run_script(script: str, arguments: list[str], steps: int = DEFAULT_STEPS, traceback_location: str = "above") -> RunResult:
    """Run `script` as `__main__` with `arguments`, under the hooks, and return the report.

    The script's folder comes first on sys.path and `sys.argv` is the script and its arguments,
    as with `python SCRIPT ARGS`. Both are restored afterwards, and so is every hook. When the
    script raises, its traceback goes to stderr, and a note of the report gives
    `traceback_location` as its place (e.g. "above" under a text report).
    """
    script = os.path.abspath(script)
    recorder = TrainingRecorder(steps)
    saved_argv, saved_path = list(sys.argv), list(sys.path)
    sys.argv = [script, *arguments]
    sys.path.insert(0, os.path.dirname(script))
    outcome = RunOutcome("end")
    recorder.install()
    try:
        runpy.run_path(script, run_name="__main__")
    except StopScript as stop:
        outcome = RunOutcome(str(stop), inside="optimizer.step()" if recorder.stopped_inside_step else None)
    except SystemExit as exit_request:
        outcome = RunOutcome("exit", _exit_code(exit_request.code))
    except Exception as error:  # noqa: BLE001 - the script's own error is reported with its traceback
        _print_script_traceback(error, script)
        outcome = RunOutcome("exception", error=error, inside="backward()" if error is recorder.backward_error else None)
    finally:
        recorder.remove()
        sys.argv, sys.path[:] = saved_argv, saved_path

    # runpy has put the script's namespace away; the records keep the objects the report needs.
    report = recorder.build_report(outcome, script, traceback_location)
    return RunResult(report, outcome)


def _exit_code(code: Any) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # sys.exit("message") prints the message, as Python does.
    return 1


def _print_script_traceback(error: BaseException, script: str) -> None:
    """Print the script's traceback as `python SCRIPT` would: without runpy's and gradsight's frames.

    Frames before the script's first one are runpy's, and the hooks put gradsight's frames
    between the script's and torch's (around `backward()`, in optimizer constructors).
    """
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != script:
        tb = tb.tb_next
    exception = traceback.TracebackException(type(error), error, tb or error.__traceback__)
    _drop_own_frames(exception, set())
    print("".join(exception.format()), end="", file=sys.stderr)


def _drop_own_frames(exception: traceback.TracebackException, seen: set[int]) -> None:
    """Remove the frames of gradsight's and runpy's files from `exception` and the exceptions chained to it."""
    if id(exception) in seen:
        return
    seen.add(id(exception))
    own_folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    own_files = (os.path.abspath(runpy.__file__),)
    frames = [
        frame for frame in exception.stack
        if not os.path.abspath(frame.filename).startswith(own_folder + os.sep) and os.path.abspath(frame.filename) not in own_files
    ]
    exception.stack = traceback.StackSummary.from_list(frames)
    for chained in (exception.__cause__, exception.__context__):
        if chained is not None:
            _drop_own_frames(chained, seen)
