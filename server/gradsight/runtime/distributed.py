"""Combine a snapshot's per-parameter statistics across the ranks of a `torch.distributed` job.

The probe reads this rank's values only and never communicates. Here every rank sends its
numbers in one tensor through one `all_gather`, so that each rank gets:

- gradient and weight norms of DTensor parameters (FSDP2's `fully_shard`, tensor parallelism)
  as the square root of the summed squares of all ranks' local values, divided by the number
  of ranks that hold each value (the Replicate dimensions of the mesh);
- norms of plain parameters, which every rank holds whole, as the root mean square over the
  ranks, which equals the norm when the ranks agree (DDP averages the gradients in backward);
- `hasGrad` when any rank has a gradient, max |grad| the maximum over the ranks, and NaN and
  Inf counts summed over the ranks and divided by the number of copies, rounded up;
- no gradient norm for a DTensor gradient with a Partial placement (its local values are
  addends of the gradient, whose norm only their sum gives), unless every addend is zero, and
  the maximum NaN and Inf counts over the ranks;
- plain parameters whose weights differ between ranks after a step, reported as GS915.

Tested with two gloo processes on the CPU (tests/test_distributed_run.py and
tests/test_distributed_sharded.py): DDP, FSDP2 with an uneven shard and an unused layer, and
tensor parallelism with Shard(0), Shard(1) and Replicate parameters.

Every rank must call `combine_across_ranks` at the same point with the same model, as for any
collective operation; `gradsight run` and `gradsight.watch` do so after the same backward pass
or optimizer step on every rank.
"""

from __future__ import annotations

import math
from typing import Any

REPLICAS_DIFFER = "GS915"

# Columns of the packed tensor, one row per parameter. A replica count of 0 marks a plain
# tensor, of which every rank has a full copy.
_COLUMNS = (
    "hasGrad", "gradSquare", "gradMaxAbs", "gradNan", "gradInf", "gradReplicas", "gradPartial",
    "weightSquare", "weightNan", "weightInf", "replicas", "partial", "checksum0", "checksum1",
)
_INDEX = {name: position for position, name in enumerate(_COLUMNS)}
_PLACEMENT_COLUMNS = {"grad": ("gradReplicas", "gradPartial"), "weight": ("replicas", "partial")}


def is_distributed() -> bool:
    """Return whether torch.distributed is initialized in this process (False without torch.distributed)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if is_distributed() else 0


def combine_across_ranks(snapshot: dict[str, Any]) -> list[dict[str, Any]]:
    """Replace the statistics in `snapshot` by those of all ranks; return GS915 findings.

    Runs exactly one collective operation. Returns findings as dicts with `code`, `severity`,
    `message` and `layer`, for the plain parameters whose value differs between ranks.
    """
    import torch
    import torch.distributed as dist

    parameters = snapshot.get("parameters", [])
    rows = [[_float(_row_value(p, column)) for column in _COLUMNS] for p in parameters]
    local = torch.tensor(rows, dtype=torch.float64).reshape(len(parameters), len(_COLUMNS))
    world_size = dist.get_world_size()
    gathered = [torch.empty_like(local) for _ in range(world_size)]
    dist.all_gather(gathered, local)
    stacked = torch.stack(gathered)  # ranks x parameters x columns

    findings = []
    for position, parameter in enumerate(parameters):
        values = stacked[:, position, :]
        _combine_parameter(parameter, values.T.tolist(), world_size)
        if not parameter.get("local") and _differs(values):
            findings.append(_differs_finding(parameter, world_size))

    _note_combined(snapshot, world_size)
    return findings


def _row_value(parameter: dict[str, Any], column: str) -> Any:
    if column in ("hasGrad", "gradPartial", "partial"):
        return 1.0 if parameter.get(column) else 0.0
    if column in ("gradSquare", "weightSquare"):
        norm = _float(parameter.get("gradNorm" if column == "gradSquare" else "weightNorm"))
        return norm * norm
    if column.startswith("checksum"):
        checksum = parameter.get("checksum") or [None, None]
        return checksum[int(column[-1])]
    return parameter.get(column)


def _combine_parameter(parameter: dict[str, Any], columns: list[list[float]], world_size: int) -> None:
    """Set the statistics of one parameter from `columns`: per column, the values of all ranks."""
    with_grad = [rank for rank, flag in enumerate(columns[_INDEX["hasGrad"]]) if flag]
    parameter["hasGrad"] = bool(with_grad)

    weight = _combine_tensor(columns, "weight", list(range(world_size)))
    parameter["weightNorm"] = weight["norm"]
    parameter["weightNan"], parameter["weightInf"] = weight["nan"], weight["inf"]
    if parameter.get("checksum") is not None:
        parameter["checksum"] = [parameter["weightNorm"], _json_number(sum(columns[_INDEX["checksum1"]]))]

    if not with_grad:
        for key in ("gradNorm", "gradMaxAbs", "gradChecksum"):
            parameter[key] = None
        parameter["gradNan"], parameter["gradInf"] = 0, 0
        return

    grad = _combine_tensor(columns, "grad", with_grad)
    parameter["gradNorm"], parameter["gradMaxAbs"] = grad["norm"], grad["maxAbs"]
    parameter["gradNan"], parameter["gradInf"] = grad["nan"], grad["inf"]
    # The checksum only has to change when the gradient does, so the addends of a Partial
    # gradient serve as well as its unknown norm.
    parameter["gradChecksum"] = [grad["norm"] if grad["norm"] is not None else grad["addendNorm"], grad["addendMaxAbs"]]


def _combine_tensor(columns: list[list[float]], kind: str, ranks: list[int]) -> dict[str, Any]:
    """Combine the weight or gradient statistics (`kind`) of the ranks in `ranks`.

    Returns `norm`, `maxAbs` (gradients only), `nan` and `inf`, plus `addendNorm` and
    `addendMaxAbs`, which treat the ranks' values as parts of one tensor whatever their placement.
    """

    def column(name: str) -> list[float]:
        return [columns[_INDEX[name]][rank] for rank in ranks]

    replicas_column, partial_column = _PLACEMENT_COLUMNS[kind]
    squares = column(kind + "Square")
    nans = column(kind + "Nan")
    infs = column(kind + "Inf")
    maxima = column("gradMaxAbs") if kind == "grad" else []
    replicas = max(column(replicas_column))
    partial = any(column(partial_column))
    combined: dict[str, Any] = {
        "addendNorm": _json_number(math.sqrt(sum(squares))),
        "addendMaxAbs": _json_number(max(maxima)) if maxima else None,
    }

    if partial:
        # NOTE: the norm of a sum of addends needs the summed tensor, which this one small
        # collective does not send. All-zero addends are the one case that the norms decide.
        all_zero = not any(squares)
        combined["norm"] = 0.0 if all_zero else None
        combined["maxAbs"] = 0.0 if all_zero else None
        # A NaN in any addend is a NaN in the sum, so the maximum is a lower bound.
        combined["nan"], combined["inf"] = int(max(nans)), int(max(infs))
        return combined

    copies = replicas if replicas else len(ranks)  # Each rank has a full copy of a plain tensor.
    combined["norm"] = _json_number(math.sqrt(sum(squares) / copies))
    combined["maxAbs"] = _json_number(max(maxima)) if maxima else None
    combined["nan"] = math.ceil(sum(nans) / copies)
    combined["inf"] = math.ceil(sum(infs) / copies)
    return combined


def _differs(values: Any) -> bool:
    """Compare the weight checksums (norm and position-weighted sample) of all ranks."""
    checksums = values[:, [_INDEX["checksum0"], _INDEX["checksum1"]]]
    if not _all_finite(checksums):
        return False  # NaN weights are reported as non-finite, and NaN != NaN proves no drift.
    return bool((checksums.max(dim=0).values != checksums.min(dim=0).values).any())


def _all_finite(tensor: Any) -> bool:
    import torch

    return bool(torch.isfinite(tensor).all())


def _differs_finding(parameter: dict[str, Any], world_size: int) -> dict[str, Any]:
    message = (
        f"{parameter['name']} has different values on the {world_size} ranks although it is replicated; the "
        "replicas have drifted apart, so the ranks train different models: make sure every rank starts from "
        "the same weights (DDP broadcasts them when it wraps the model) and that gradients are averaged "
        "before each step (DDP does this in backward; a model used without its DDP wrapper skips it)"
    )
    return {"code": REPLICAS_DIFFER, "severity": "error", "message": message + ".", "layer": parameter["layer"]}


def _note_combined(snapshot: dict[str, Any], world_size: int) -> None:
    # The probe's notes state that the values are this rank's or this shard's only, which is
    # no longer true.
    notes = [
        note for note in snapshot.get("notes", [])
        if "in a distributed job" not in note and "this rank's shard only" not in note
    ]
    notes.append(f"The statistics are combined across the {world_size} ranks of the distributed job.")
    partial = [p["name"] for p in snapshot.get("parameters", []) if p.get("gradPartial") and p.get("gradNorm") is None]
    if partial:
        notes.append(
            f"{len(partial)} gradients have a Partial placement (DTensor), so each rank holds addends that "
            f"are not summed yet and their norms are not reported: {', '.join(partial[:5])}"
            + (", ..." if len(partial) > 5 else "") + "."
        )
    snapshot["notes"] = notes
    if snapshot.get("distributed") is not None:
        snapshot["distributed"]["combined"] = True


def _float(value: Any) -> float:
    if value is None or isinstance(value, bool):
        return float(bool(value)) if isinstance(value, bool) else 0.0
    if isinstance(value, str):
        return float(value)  # "nan", "inf" and "-inf" from the probe.
    return float(value)


def _json_number(value: float) -> float | str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value
