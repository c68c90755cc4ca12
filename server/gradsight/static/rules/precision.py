"""GS6: mixed precision.

With a GradScaler, `scaler.scale(loss).backward()` leaves gradients multiplied by the loss
scale (65536 at the start). GS601 scaler-misuse reports an optimizer stepped directly on those
gradients instead of through `scaler.step(optimizer)`, and a scaler whose `update()` is never
called. GS602 clip-before-unscale reports gradient clipping on the scaled gradients, before
`scaler.unscale_(optimizer)`.

Both stay quiet for a scaler built with `enabled=False` (its scale() and step() pass values
through) and for clipping through Accelerate, Fabric or Lightning, which unscale first.
"""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

from gradsight.findings import Fix
from gradsight.static import loops
from gradsight.static.loops import BACKWARD, CLIP, OPAQUE, SCALER_UPDATE, STEP, UNSCALE, Event, Sequence, exclusive
from gradsight.static.registry import after_walk

if TYPE_CHECKING:
    from gradsight.static.context import Context


@after_walk
def check_mixed_precision(ctx: Context) -> None:
    model = loops.training_model(ctx)
    if not model.events:
        return
    seen: set[tuple[str, int]] = set()
    for sequence in model.sequences():
        for backward in sequence.of_kind(BACKWARD):
            if backward.scaler is None or model.scaler_disabled(backward.scaler, backward.node):
                continue
            _check_unscaled_step(ctx, sequence, backward, seen)
            _check_clip_before_unscale(ctx, sequence, backward, seen)
    for sequence in model.outermost_sequences():
        _check_update_missing(ctx, model, sequence, seen)


def _report(ctx: Context, seen: set[tuple[str, int]], code: str, node: ast.AST, message: str, **options) -> None:
    key = (code, id(node))
    if key not in seen:
        seen.add(key)
        ctx.report(code, node, message, **options)


# GS601


def _check_unscaled_step(ctx: Context, sequence: Sequence, backward: Event, seen: set) -> None:
    events = sequence.events
    start = events.index(backward)
    for step in events[start + 1 :]:
        if step.kind != STEP or step.scaler is not None or step.closure or step.manual or exclusive(step, backward):
            continue
        through_scaler = any(
            other.kind == STEP and other.scaler is not None and other.target == step.target and not exclusive(other, step)
            for other in events
        )
        if through_scaler or loops.inside_one_call(backward, step):
            continue
        scaler = backward.scaler
        _report(
            ctx,
            seen,
            "GS601",
            step.report_node,
            f"`{ctx.text(step.node)}` applies the gradients that `{scaler}.scale(loss).backward()` (line "
            f"{ctx.line_of(backward.report_node)}) multiplied by the loss scale (65536 at the start): each update is "
            f"thousands of times too large, and steps with inf or NaN gradients are not skipped; write "
            f"`{scaler}.step({step.target})` followed by `{scaler}.update()`",
            related=(ctx.related(backward.report_node, "the loss is scaled here"),),
            fix=_scaler_step_fix(ctx, sequence, backward, step),
        )


def _scaler_step_fix(ctx: Context, sequence: Sequence, backward: Event, step: Event) -> Fix | None:
    call = step.node
    if step.sites or backward.sites or not isinstance(call, ast.Call) or call.args or call.keywords:
        return None
    statement = ctx.model.parent(call)
    if not isinstance(statement, ast.Expr):
        return None
    scaler = backward.scaler
    edits = [ctx.replace(call, f"{scaler}.step({step.target})")]
    has_update = any(event.kind == SCALER_UPDATE and event.target == scaler for event in sequence.events)
    title = f"Replace with `{scaler}.step({step.target})`"
    if not has_update:
        edits.append(ctx.insert_after(statement, f"\n{ctx.indentation(statement)}{scaler}.update()"))
        title += f" and call `{scaler}.update()`"
    return Fix(title, tuple(edits))


def _check_update_missing(ctx: Context, model: loops.TrainingModel, sequence: Sequence, seen: set) -> None:
    context = model.context_of(sequence)
    if any(event.kind == OPAQUE for event in context):
        return
    for step in sequence.of_kind(STEP):
        scaler = step.scaler
        if scaler is None or model.scaler_disabled(scaler, step.node):
            continue
        if any(event.kind == SCALER_UPDATE and event.target == scaler for event in context):
            continue
        _report(
            ctx,
            seen,
            "GS601",
            step.report_node,
            f"`{scaler}.update()` is never called after `{ctx.text(step.node)}`: the loss scale never adapts, so after "
            f"one overflow the scaler keeps skipping steps, and PyTorch raises an error on the next `{scaler}.step()`; "
            f"call `{scaler}.update()` right after `{scaler}.step(...)` in every iteration",
        )
        return


# GS602


def _check_clip_before_unscale(ctx: Context, sequence: Sequence, backward: Event, seen: set) -> None:
    events = sequence.events
    start = events.index(backward)
    for position in range(start + 1, len(events)):
        clip = events[position]
        if clip.kind != CLIP or clip.unscales or exclusive(clip, backward):
            continue
        unscaled = any(
            event.kind == UNSCALE and event.scaler == backward.scaler and not exclusive(event, clip)
            for event in events[start + 1 : position]
        )
        if unscaled or loops.inside_one_call(backward, clip):
            continue
        scaler = backward.scaler
        optimizer = next((e.target for e in events[position + 1 :] if e.kind == STEP and e.target and not e.manual), None)
        unscale = f"{scaler}.unscale_({optimizer or 'optimizer'})"
        _report(
            ctx,
            seen,
            "GS602",
            clip.report_node,
            f"`{ctx.text(clip.node)}` clips gradients that are still multiplied by the loss scale of `{scaler}` "
            f"(65536 at the start): the threshold is compared with scaled norms, so nearly every gradient is cut to a "
            f"tiny fraction of its size; call `{unscale}` before clipping",
            related=(ctx.related(backward.report_node, "the loss is scaled here"),),
            fix=_unscale_fix(ctx, sequence, backward, clip, optimizer),
        )


def _unscale_fix(ctx: Context, sequence: Sequence, backward: Event, clip: Event, optimizer: str | None) -> Fix | None:
    if optimizer is None or clip.sites or backward.sites:
        return None
    if any(event.kind == UNSCALE for event in sequence.events):
        return None  # A second unscale_() before the next update() raises a RuntimeError.
    statement = ctx.model.parent(clip.node)
    if not isinstance(statement, ast.Expr):
        return None
    text = f"{backward.scaler}.unscale_({optimizer})"
    return Fix(f"Call `{text}` before clipping", (ctx.insert_before(statement, f"{text}\n{ctx.indentation(statement)}"),))
