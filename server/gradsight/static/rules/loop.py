"""GS4: the training loop.

Each rule reads the training-loop model (`gradsight.static.loops`): the ordered events of one
iteration of every loop that trains, with helper functions of the same file followed.

GS401 grads-never-cleared, GS402 missing-backward and GS403 missing-step report an event that
a loop never has. They look at the outermost training loop of a function, at the rest of that
function and at the functions that call it. They stay quiet when a call they cannot follow
(defined in another file) has a name that says it trains.

GS404 grads-cleared-before-step, GS405 step-before-backward and GS406 scheduler-before-optimizer
report events in the wrong order within one iteration. GS407 eval-mode-never-undone reports
`model.eval()` in a training loop that never switches the model back with `model.train()`.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from gradsight.findings import Edit, Fix, Span
from gradsight.static import loops
from gradsight.static.loops import BACKWARD, EVAL, GRADIENTS, OPAQUE, SCHEDULER_STEP, STEP, TRAIN, ZERO_GRAD, Event, Sequence, exclusive
from gradsight.static.registry import after_walk

if TYPE_CHECKING:
    from gradsight.static.context import Context

# Model names that usually stay in eval mode on purpose: distillation teachers, EMA copies, RL targets.
_FROZEN_MODEL_WORDS = ("teacher", "ema", "target", "frozen", "ref", "pretrained")


class _Reporter:
    """Report each (code, node) once: a loop in a helper is seen on its own and inlined in its callers."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.seen: set[tuple[str, int]] = set()

    def report(self, code: str, node: ast.AST, message: str, **options) -> None:
        key = (code, id(node))
        if key not in self.seen:
            self.seen.add(key)
            self.ctx.report(code, node, message, **options)


@after_walk
def check_training_loops(ctx: Context) -> None:
    model = loops.training_model(ctx)
    if not model.events:
        return
    reporter = _Reporter(ctx)
    for sequence in model.outermost_sequences():
        _check_never_cleared(model, reporter, sequence)
        _check_missing_backward(model, reporter, sequence)
        _check_missing_step(model, reporter, sequence)
        _check_eval_never_undone(model, reporter, sequence)
    for sequence in model.sequences():
        _check_cleared_before_step(model, reporter, sequence)
        _check_step_before_backward(reporter, sequence)
        _check_scheduler_before_optimizer(reporter, sequence)


def _name(event: Event) -> str:
    return event.target or "the optimizer"


def _call_text(ctx: Context, event: Event) -> str:
    """Return the event's call in backticks, and the helper it is in when it is not written in the loop itself."""
    return f"`{ctx.text(event.node)}`{_where(ctx, event)}"


def _call_at(ctx: Context, event: Event) -> str:
    """Return the event's call in backticks with its line, for events that a message refers to."""
    if event.sites:
        return _call_text(ctx, event)
    return f"`{ctx.text(event.node)}` (line {ctx.line_of(event.node)})"


def _where(ctx: Context, event: Event) -> str:
    """Describe the helper function that an event is written in, and the line that calls it."""
    if not event.sites:
        return ""
    helper = event.sites[-1]
    return f" (in `{ctx.text(helper.func)}()`, called on line {ctx.line_of(event.sites[0])})"


# GS401


def _check_never_cleared(model: loops.TrainingModel, reporter: _Reporter, sequence: Sequence) -> None:
    context = model.context_of(sequence)
    if any(event.kind == OPAQUE for event in context):
        return
    if not sequence.of_kind(BACKWARD):
        return
    single = len(sequence.optimizers()) <= 1
    # A clearing before the loop runs once, so only clearings in the loop (or in a caller's loop) count.
    zeros = [event for event in sequence.events + model.caller_events(sequence.root) if event.kind == ZERO_GRAD]
    for optimizer in sorted(sequence.optimizers()):
        steps = [event for event in sequence.events if event.kind == STEP and event.target == optimizer]
        if any(step.closure for step in steps):
            continue  # An LBFGS closure that could not be followed clears the gradients itself.
        if any(model.clears(zero, optimizer, single) is not False for zero in zeros):
            continue
        step = steps[0]
        what = "the parameters" if step.manual else f"`{optimizer}`"
        reporter.report(
            "GS401",
            step.report_node,
            f"gradients of {what} are never cleared in this loop: backward() adds to `.grad`, so each step applies the "
            "sum of the gradients of every batch so far and the updates grow until training diverges; call "
            f"`{_zero_call(optimizer, step)}` at the start of each iteration (or after the step)",
        )


def _zero_call(optimizer: str, step: Event) -> str:
    return "model.zero_grad()" if step.manual else f"{optimizer}.zero_grad()"


# GS402


def _check_missing_backward(model: loops.TrainingModel, reporter: _Reporter, sequence: Sequence) -> None:
    context = model.context_of(sequence)
    if any(event.kind in (BACKWARD, GRADIENTS, OPAQUE) for event in context):
        return
    for step in sequence.of_kind(STEP):
        if step.closure or step.manual:
            continue
        reporter.report(
            "GS402",
            step.report_node,
            f"{_call_text(reporter.ctx, step)} steps the optimizer but this loop never calls backward(): no gradients "
            "are computed, so the step changes nothing (or reuses stale gradients); call `loss.backward()` before the step",
        )
        return


# GS403


def _check_missing_step(model: loops.TrainingModel, reporter: _Reporter, sequence: Sequence) -> None:
    context = model.context_of(sequence)
    if any(event.kind in (STEP, OPAQUE) for event in context):
        return
    if sequence.loop is None or model.reads_gradients(sequence.loop):
        return  # Gradients read by hand: saliency maps, adversarial examples, gradient checks.
    if not _optimizer_in_scope(reporter.ctx, sequence.root):
        return
    backward = next((event for event in sequence.events if event.kind == BACKWARD), None)
    if backward is None:
        return
    reporter.report(
        "GS403",
        backward.report_node,
        f"{_call_text(reporter.ctx, backward)} computes gradients in this loop but no optimizer ever steps: the "
        "parameters never change and the gradients pile up in `.grad`; call `optimizer.step()` after backward() "
        "(or `scaler.step(optimizer)` with a GradScaler)",
    )


def _optimizer_in_scope(ctx: Context, root: ast.AST) -> bool:
    """Tell whether an optimizer is visible where the loop runs.

    Names in the loop's own function count when they look like an optimizer; names of the module count
    only when they are assigned (an import of `torch.optim as optim` is no optimizer), and so do
    `self.<name>` attributes of the enclosing class. A gradient check in one function of a long
    test file must not be judged by an optimizer in another function.
    """
    own = ctx.model.scopes.get(root)
    if own is not None and any(loops.looks_like_optimizer(name) for name in own.bindings):
        return True
    module_names = [
        name
        for name, bindings in ctx.model.module_scope.bindings.items()
        if any(binding.kind == "assign" for binding in bindings)
    ]
    if any(loops.looks_like_optimizer(name) for name in module_names):
        return True
    owner = ctx.model.enclosing_class(root) if root is not ctx.tree else None
    if owner is None:
        return False
    for node in ast.walk(owner):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and loops.looks_like_optimizer(node.attr):
            return True
    return False


# GS404


def _check_cleared_before_step(model: loops.TrainingModel, reporter: _Reporter, sequence: Sequence) -> None:
    events = sequence.events
    single = len(sequence.optimizers()) <= 1
    for position, step in enumerate(events):
        if step.kind != STEP or step.target is None:
            continue
        backward_position = _last_before(events, position, BACKWARD, step)
        if backward_position is None:
            continue
        step_conditions = _conditions(sequence, step)
        between = events[backward_position + 1 : position]
        for offset, zero in enumerate(between):
            if zero.kind != ZERO_GRAD or exclusive(zero, step) or exclusive(zero, events[backward_position]):
                continue
            if any(event.kind == STEP for event in between[:offset]):
                continue  # A step used the gradients before this clear (one update per model, one after another).
            if any(event.kind == GRADIENTS for event in between[offset + 1 :]):
                continue  # `p.grad = g` fills the gradients again before the step (PCGrad-style gradient surgery).
            if not _conditions(sequence, zero) <= step_conditions:
                continue  # The clearing runs only on some of the iterations that step.
            if model.clears(zero, step.target, single) is not True:
                continue
            _report_cleared_before_step(reporter, sequence, events[backward_position], zero, step)


def _conditions(sequence: Sequence, event: Event) -> set:
    return {item for item in sequence.after_loop(event) if isinstance(item, loops.Branch)}


def _last_before(events: list[Event], position: int, kind: str, reference: Event) -> int | None:
    for index in range(position - 1, -1, -1):
        if events[index].kind == kind and not exclusive(events[index], reference):
            return index
    return None


def _report_cleared_before_step(reporter: _Reporter, sequence: Sequence, backward: Event, zero: Event, step: Event) -> None:
    if loops.inside_one_call(backward, zero, step):
        return  # Reported in the helper itself.
    ctx = reporter.ctx
    zero_text = _call_text(ctx, zero)
    step_text = _call_at(ctx, step)
    related = (
        ctx.related(backward.report_node, "backward() computes the gradients here"),
        ctx.related(step.report_node, "the optimizer steps here, with zero gradients"),
    )
    reporter.report(
        "GS404",
        zero.report_node,
        f"{zero_text} clears the gradients after {_call_at(ctx, backward)} and before {step_text}: every step applies zero gradients and the "
        "parameters never change; clear the gradients before backward() or after the step",
        related=related,
        fix=_move_after_step_fix(ctx, zero, step),
    )


def _move_after_step_fix(ctx: Context, zero: Event, step: Event) -> Fix | None:
    """Build the edits that move the clearing statement to just after the step, in the step's block."""
    if zero.sites or step.sites or ctx.model.enclosing_function(zero.node) is not ctx.model.enclosing_function(step.node):
        return None  # Written in a helper or an LBFGS closure: moving the line across functions is not certain.
    zero_statement = ctx.model.parent(zero.node)
    step_statement = ctx.model.parent(step.node)
    if not isinstance(zero_statement, ast.Expr) or not isinstance(step_statement, ast.Expr):
        return None
    if zero_statement.lineno != zero_statement.end_lineno or not _alone_on_line(ctx, zero_statement):
        return None
    block = _block_of(ctx, zero_statement)
    if block is None or len(block) < 2:
        return None  # Deleting the only statement of a block would leave it empty.
    text = ctx.segment(zero_statement)
    if text is None:
        return None
    indentation = ctx.indentation(step_statement)
    end = step_statement.end_lineno or step_statement.lineno
    if end < len(ctx.lines):
        insertion = Edit(Span(end + 1, 1, end + 1, 1), f"{indentation}{text}\n")
    else:
        insertion = ctx.insert_after(step_statement, f"\n{indentation}{text}")
    return Fix(f"Move `{text}` after `{ctx.text(step.node)}`", (ctx.delete_lines(zero_statement), insertion))


def _alone_on_line(ctx: Context, statement: ast.stmt) -> bool:
    line = ctx.lines[statement.lineno - 1]
    text = ctx.segment(statement) or ""
    rest = line.strip()[len(text) :].strip()
    return line.strip().startswith(text) and (not rest or rest.startswith("#"))


def _block_of(ctx: Context, statement: ast.stmt) -> list[ast.stmt] | None:
    parent = ctx.model.parent(statement)
    for name in ("body", "orelse", "finalbody", "handlers"):
        block = getattr(parent, name, None)
        if isinstance(block, list) and any(item is statement for item in block):
            return block
    return None


# GS405


def _check_step_before_backward(reporter: _Reporter, sequence: Sequence) -> None:
    events = sequence.events
    for position, step in enumerate(events):
        if step.kind != STEP or step.closure:
            continue
        if _last_before(events, position, BACKWARD, step) is not None:
            continue
        later = next(
            (event for event in events[position + 1 :] if event.kind == BACKWARD and not exclusive(event, step)),
            None,
        )
        if later is None or loops.inside_one_call(step, later):
            continue
        ctx = reporter.ctx
        reporter.report(
            "GS405",
            step.report_node,
            f"{_call_text(ctx, step)} runs before {_call_at(ctx, later)} in each iteration: "
            "every update uses the gradients of the previous batch, and the first step has none; call backward() "
            "first, then step",
            related=(ctx.related(later.report_node, "backward() comes after the step here"),),
        )


# GS406


def _check_scheduler_before_optimizer(reporter: _Reporter, sequence: Sequence) -> None:
    events = sequence.events
    for position, scheduler in enumerate(events):
        if scheduler.kind != SCHEDULER_STEP:
            continue
        call = scheduler.node
        if isinstance(call, ast.Call) and (call.args or call.keywords):
            continue  # ReduceLROnPlateau.step(metric) reacts to a metric and skips no value.
        if _last_before(events, position, STEP, scheduler) is not None:
            continue
        step = next(
            (event for event in events[position + 1 :] if event.kind == STEP and not event.manual and not exclusive(event, scheduler)),
            None,
        )
        if step is None or loops.inside_one_call(scheduler, step):
            continue
        ctx = reporter.ctx
        reporter.report(
            "GS406",
            scheduler.report_node,
            f"{_call_text(ctx, scheduler)} runs before {_call_at(ctx, step)}: "
            "the first value of the learning-rate schedule is skipped and the whole schedule runs one step early "
            "(PyTorch warns about this order); step the scheduler after the optimizer",
            related=(ctx.related(step.report_node, "the optimizer steps here"),),
        )


# GS407


def _check_eval_never_undone(model: loops.TrainingModel, reporter: _Reporter, sequence: Sequence) -> None:
    if not sequence.of_kind(STEP, BACKWARD):
        return
    context = sequence.events + model.caller_events(sequence.root)
    trained = _trained_models(model, sequence)
    for event in sequence.of_kind(EVAL):
        root = loops.model_root(event.target)
        if root is None or not _is_trained(model, root, trained):
            continue
        if any(other.kind == TRAIN and loops.model_root(other.target) in (root, None) for other in context):
            continue
        ctx = reporter.ctx
        related = (ctx.related(event.node, f"`{ctx.text(event.node)}` is called here"),) if event.sites else ()
        reporter.report(
            "GS407",
            event.report_node,
            f"`{event.target}.eval()`{_where(ctx, event)} runs inside the training loop and nothing calls "
            f"`{event.target}.train()` again: from the next iteration on, dropout is off and BatchNorm uses its running "
            f"statistics while training; call `{event.target}.train()` at the start of each epoch",
            related=related,
        )


def _trained_models(model: loops.TrainingModel, sequence: Sequence) -> set[str] | None:
    """Return the models whose parameters the loop's optimizers update, or None when that is not known."""
    models: set[str] = set()
    for optimizer in sequence.optimizers():
        found = model.optimizer_models(optimizer)
        if found is None:
            return None
        models |= found
    return models


def _is_trained(model: loops.TrainingModel, root: str, trained: set[str] | None) -> bool:
    if trained is not None and root in trained:
        return True
    if any(event.kind == TRAIN and loops.model_root(event.target) == root for events in model.events.values() for event in events):
        return True
    return trained is None and not any(word in root.lower() for word in _FROZEN_MODEL_WORDS)
