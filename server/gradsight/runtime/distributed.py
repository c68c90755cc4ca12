"""Combine a snapshot's per-parameter statistics across the ranks of a `torch.distributed` job.

The probe reads this rank's values only and never communicates. Here every rank sends its
numbers in one tensor through one `all_gather`, so that each rank gets:

- gradient and weight norms of sharded (DTensor) parameters as the square root of the summed
  squares of the shards;
- norms of replicated parameters as the root mean square over the ranks, which equals the
  norm when the ranks agree (DDP averages the gradients in backward);
- `hasGrad` when any rank has a gradient, NaN and Inf counts summed, max |grad| the maximum;
- replicated parameters whose weights differ between ranks after a step, reported as GS915.

NOTE: sharded DTensor (FSDP2) parameters take the summed-squares path, but no test runs FSDP2
here, so that path is checked only by reading.

Every rank must call `combine_across_ranks` at the same point with the same model, as for any
collective operation; `gradsight run` and `gradsight.watch` do so after the same backward pass
or optimizer step on every rank.
"""

from __future__ import annotations

import math
from typing import Any

REPLICAS_DIFFER = "GS915"

# Columns of the packed tensor, one row per parameter.
_COLUMNS = (
    "hasGrad", "gradSquare", "gradMaxAbs", "gradNan", "gradInf",
    "weightSquare", "weightNan", "weightInf", "checksum0", "checksum1",
)
_INDEX = {name: position for position, name in enumerate(_COLUMNS)}


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
    `message` and `layer`, for the parameters whose value differs between ranks.
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
        _combine_parameter(parameter, values, world_size)
        if not parameter.get("local") and _differs(values):
            findings.append(_differs_finding(parameter, world_size))

    _note_combined(snapshot, world_size)
    return findings


def _row_value(parameter: dict[str, Any], column: str) -> Any:
    if column == "hasGrad":
        return 1.0 if parameter.get("hasGrad") else 0.0
    if column in ("gradSquare", "weightSquare"):
        norm = _float(parameter.get("gradNorm" if column == "gradSquare" else "weightNorm"))
        return norm * norm
    if column.startswith("checksum"):
        checksum = parameter.get("checksum") or [None, None]
        return checksum[int(column[-1])]
    return parameter.get(column)


def _combine_parameter(parameter: dict[str, Any], values: Any, world_size: int) -> None:
    column = values.T.tolist()
    with_grad = [rank for rank, flag in enumerate(column[_INDEX["hasGrad"]]) if flag]
    parameter["hasGrad"] = bool(with_grad)

    def norm(square_column: str, ranks: list[int]) -> float | str | None:
        squares = [column[_INDEX[square_column]][rank] for rank in ranks]
        if not squares:
            return None
        total = sum(squares)
        # Shards add up; replicas are averaged, which leaves equal replicas' norm unchanged.
        value = math.sqrt(total if parameter.get("local") else total / len(squares))
        return _json_number(value)

    for kind in ("grad", "weight"):
        parameter[kind + "Nan"] = int(sum(column[_INDEX[kind + "Nan"]]))
        parameter[kind + "Inf"] = int(sum(column[_INDEX[kind + "Inf"]]))
    parameter["weightNorm"] = norm("weightSquare", list(range(world_size)))
    if parameter.get("checksum") is not None:
        parameter["checksum"] = [parameter["weightNorm"], _json_number(sum(column[_INDEX["checksum1"]]))]
    if with_grad:
        parameter["gradNorm"] = norm("gradSquare", with_grad)
        parameter["gradMaxAbs"] = _json_number(max(column[_INDEX["gradMaxAbs"]][rank] for rank in with_grad))
        parameter["gradChecksum"] = [parameter["gradNorm"], parameter["gradMaxAbs"]]
    else:
        for key in ("gradNorm", "gradMaxAbs", "gradChecksum"):
            parameter[key] = None


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
    # The probe's note states that the values are this rank's only, which is no longer true.
    notes = [note for note in snapshot.get("notes", []) if "in a distributed job" not in note]
    notes.append(f"The statistics are combined across the {world_size} ranks of the distributed job.")
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
