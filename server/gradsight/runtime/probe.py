"""Read gradient statistics of a live PyTorch model from inside a paused process.

The debugger front end injects this file into the debuggee as the module `_gradsight_probe` and
calls it with single expressions (see docs/runtime-protocol.md). So it imports only the standard
library and, inside functions, torch; it must not import gradsight.

The probe changes nothing in the debuggee. It reads parameters, gradients and optimizer state
under `torch.no_grad()` and calls no per-tensor `.item()`. It draws no random numbers, leaves
`requires_grad` and train/eval mode as they are, registers no hook and runs no collective
operation of `torch.distributed`. Every public function returns a JSON string and turns any
`Exception` into an `error` result.
"""

import json
import math
import sys
import time
import traceback
import uuid
import weakref

PROBE_API = "1"
MODULE_NAME = "_gradsight_probe"

# Payloads longer than this many characters are kept in the probe and read in pieces. Without
# `format.rawString`, debugpy 1.8 cuts an evaluate result at 2**16 characters, and small pieces
# keep every DAP message small.
CHUNK_SIZE = 32768
MAX_PENDING_PAYLOADS = 8

# Elements per tensor in the position-weighted part of a weight checksum.
SAMPLE_SIZE = 64

# Normalization layers that remove a constant shift of their input: a bias just before one of
# them gets a gradient that is zero up to rounding.
NORMALIZATION_TYPES = (
    "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "LazyBatchNorm1d",
    "LazyBatchNorm2d", "LazyBatchNorm3d", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
    "GroupNorm", "LayerNorm",
)

_pending_payloads = {}


class ProbeError(Exception):
    """A problem with the input that the user can fix; becomes an `error` result."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


# Entry points called by the expressions of the `gradsight/probe` request.


def install_report():
    """Return the probe version and the torch version of the debuggee as JSON."""
    try:
        import torch

        torch_version = str(torch.__version__)
    except ImportError:
        torch_version = None
    version = getattr(sys.modules.get(MODULE_NAME), "PROBE_VERSION", PROBE_API)
    python = "%d.%d.%d" % sys.version_info[:3]
    return _to_json({"probe": {"version": version, "python": python, "torch": torch_version}})


def find_candidates_json(frame_globals, frame_locals):
    """Return the models and optimizers found in the paused frame as JSON."""
    return _guarded(lambda: find_candidates(_merge_namespaces(frame_globals, frame_locals)))


def snapshot_json(model_thunk, optimizer_thunk, frame_globals, frame_locals):
    """Snapshot the model that `model_thunk()` returns and return it as JSON (maybe chunked).

    `optimizer_thunk()` returns an optimizer, a list of optimizers or None; with None, the
    optimizers found in the frame that hold the model's parameters are used.
    """

    def run():
        namespace = _merge_namespaces(frame_globals, frame_locals)
        model = _call_user_expression(model_thunk, "model")
        optimizer = _call_user_expression(optimizer_thunk, "optimizer")
        return snapshot(model, optimizer, namespace)

    return _guarded(run)


def read_chunk(token, index):
    """Return piece `index` of a stored payload; the payload is dropped after its last piece."""
    chunks = _pending_payloads.get(token)
    if chunks is None or not 0 <= index < len(chunks):
        message = "no stored payload %r with a piece %r: take a new snapshot" % (token, index)
        return _to_json({"error": {"code": "unknown-token", "message": message}})

    if index == len(chunks) - 1:
        del _pending_payloads[token]
    return chunks[index]


# Finding models and optimizers.


def find_candidates(namespace):
    torch = _import_torch()
    nn = torch.nn
    models = []
    optimizers = []
    for expression, value in _frame_objects(namespace):
        if isinstance(value, nn.Module):
            models.append((expression, value))
        elif isinstance(value, torch.optim.Optimizer):
            optimizers.append((expression, value))

    models = _drop_submodules(models)
    model_entries = [_describe_model_candidate(expression, model) for expression, model in models]
    model_entries.sort(key=lambda entry: -entry["parameters"])
    optimizer_entries = [_describe_optimizer_candidate(expression, opt) for expression, opt in optimizers]
    return {"models": model_entries, "optimizers": optimizer_entries}


def _frame_objects(namespace):
    """Yield (expression, value) for the frame's names and one attribute level below them."""
    seen = set()
    for name, value in list(namespace.items()):
        if name.startswith("__") or isinstance(value, (type, type(sys))):
            continue
        if id(value) in seen:
            continue
        seen.add(id(value))
        yield name, value

        for attribute, child in _public_attributes(value):
            if id(child) in seen:
                continue
            seen.add(id(child))
            yield "%s.%s" % (name, attribute), child


def _public_attributes(value):
    import torch

    if isinstance(value, (torch.nn.Module, torch.optim.Optimizer, torch.Tensor)):
        # A module's submodules are not separate models, and an optimizer's attributes are
        # its own state.
        return []
    attributes = getattr(value, "__dict__", None)
    if not isinstance(attributes, dict):
        return []
    return [(key, child) for key, child in list(attributes.items()) if not key.startswith("_")]


def _drop_submodules(models):
    """Drop models that are submodules of another candidate, e.g. `model.backbone` beside `model`."""
    owned = set()
    for _, model in models:
        for child in model.modules():
            if child is not model:
                owned.add(id(child))
    return [(expression, model) for expression, model in models if id(model) not in owned]


def _describe_model_candidate(expression, model):
    tensors = list(model.parameters())
    return {
        "expression": expression,
        "type": _module_class(model).__name__,
        "parameters": sum(int(p.numel()) for p in tensors),
        "tensors": len(tensors),
        "devices": sorted({str(p.device) for p in tensors}),
    }


def _describe_optimizer_candidate(expression, optimizer):
    return {
        "expression": expression,
        "type": type(optimizer).__name__,
        "groups": len(optimizer.param_groups),
        "parameters": sum(len(group["params"]) for group in optimizer.param_groups),
    }


# Snapshot.


def snapshot(model, optimizer, namespace):
    torch = _import_torch()
    started = time.perf_counter()
    if model is None:
        raise ProbeError("no-model", "no model given: pass an nn.Module expression such as `model`")
    if not isinstance(model, torch.nn.Module):
        message = "%s is not an nn.Module: pass the model itself, such as `model` or `self.model`" % (
            type(model).__name__
        )
        raise ProbeError("not-a-module", message)

    notes = []
    optimizers = _resolve_optimizers(torch, model, optimizer, namespace, notes)
    parameters, layers = _collect_parameters(torch, model)
    group_of = _group_membership(optimizers)
    for entry in parameters:
        entry["group"] = group_of.get(id(entry.pop("tensor_ref")))

    with torch.no_grad():
        tensors = [entry.pop("tensor") for entry in parameters]
        _measure_tensors(torch, parameters, tensors, notes)
        optimizer_entries = [_describe_optimizer(torch, index, opt) for index, opt in enumerate(optimizers)]

    distributed = _describe_distributed(torch, notes)
    registered = [entry for entry in parameters if entry["registered"]]
    if not registered:
        notes.append("%s has no parameters." % _module_class(model).__name__)

    payload = {
        "probe": getattr(sys.modules.get(MODULE_NAME), "PROBE_VERSION", PROBE_API),
        "torch": str(torch.__version__),
        "model": _describe_model(model, registered, namespace),
        "distributed": distributed,
        "optimizers": optimizer_entries,
        "layers": layers,
        "parameters": parameters,
        "classFiles": _class_files(model),
        "notes": notes,
    }
    payload["elapsedMs"] = round((time.perf_counter() - started) * 1000, 3)
    return payload


def _resolve_optimizers(torch, model, optimizer, namespace, notes):
    """Return the optimizers to report: the given one(s), or those in the frame that train `model`."""
    if optimizer is not None:
        requested = list(optimizer) if isinstance(optimizer, (list, tuple)) else [optimizer]
        for item in requested:
            if not isinstance(item, torch.optim.Optimizer):
                message = "%s is not a torch.optim.Optimizer: pass the optimizer, or None to search the frame" % (
                    type(item).__name__
                )
                raise ProbeError("not-an-optimizer", message)
        return requested

    model_ids = {id(p) for p in model.parameters()}
    found = []
    for _, value in _frame_objects(namespace or {}):
        if isinstance(value, torch.optim.Optimizer) and value not in found:
            if any(id(p) in model_ids for group in value.param_groups for p in group["params"]):
                found.append(value)
    if not found:
        notes.append(
            "No optimizer in this frame holds the model's parameters, so learning rates and "
            "optimizer membership are not checked; pass the optimizer expression to check them."
        )
    return found


def _group_membership(optimizers):
    membership = {}
    for optimizer_index, optimizer in enumerate(optimizers):
        for group_index, group in enumerate(optimizer.param_groups):
            for p in group["params"]:
                membership.setdefault(id(p), [optimizer_index, group_index])
    return membership


def _collect_parameters(torch, model):
    """List the model's parameters, then tensors it keeps outside its registered parameters."""
    parameters = []
    owners = []
    seen = set()
    for module_name, module in model.named_modules(remove_duplicate=True):
        own = [(name, p) for name, p in module._parameters.items() if p is not None and id(p) not in seen]
        if not own:
            continue
        owners.append((module_name, module, True))
        for name, p in own:
            seen.add(id(p))
            parameters.append(_parameter_entry(module_name, name, p, registered=True))

    for path, module in _unregistered_modules(torch, model):
        own = [(name, p) for name, p in module.named_parameters() if id(p) not in seen]
        if not own:
            continue
        owners.append((path, module, False))
        for name, p in own:
            seen.add(id(p))
            layer = path if "." not in name else path + "." + name.rsplit(".", 1)[0]
            parameters.append(_parameter_entry(layer, name.rsplit(".", 1)[-1], p, registered=False))

    for module_name, attribute, tensor in _unregistered_tensors(torch, model):
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        parameters.append(_parameter_entry(module_name, attribute, tensor, registered=False))
        owners.append((_join(module_name, attribute), None, False))

    return parameters, _describe_layers(model, owners)


def _parameter_entry(layer, name, tensor, registered):
    return {
        "name": _join(layer, name),
        "layer": layer,
        "registered": registered,
        "tensor": tensor,
        "tensor_ref": tensor,
    }


def _join(prefix, name):
    return name if not prefix else prefix + "." + name


def _unregistered_modules(torch, model):
    """Yield (path, module) for modules kept in plain list, tuple or dict attributes."""
    for module_name, module in model.named_modules():
        for attribute, value in list(vars(module).items()):
            if attribute.startswith("_") or not isinstance(value, (list, tuple, dict)):
                continue
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(item, torch.nn.Module):
                    yield "%s[%r]" % (_join(module_name, attribute), key), item


def _unregistered_tensors(torch, model):
    """Yield plain tensor attributes that require grad, which model.parameters() does not include."""
    for module_name, module in model.named_modules():
        for attribute, value in list(vars(module).items()):
            if attribute.startswith("_") or isinstance(value, torch.nn.Parameter):
                continue
            if isinstance(value, torch.Tensor) and value.requires_grad and value.is_leaf:
                yield module_name, attribute, value


def _describe_layers(model, owners):
    """Describe each module that owns parameters, with the type of the leaf module after it."""
    leaves = [(name, module) for name, module in model.named_modules() if not list(module.children())]
    next_type = {}
    for position, (name, module) in enumerate(leaves):
        later = leaves[position + 1] if position + 1 < len(leaves) else None
        next_type[id(module)] = _module_class(later[1]).__name__ if later is not None else None

    layers = []
    for name, module, registered in owners:
        layers.append({
            "name": name,
            "type": _module_class(module).__name__ if module is not None else "Tensor",
            "training": bool(module.training) if module is not None else None,
            "next": next_type.get(id(module)) if module is not None else None,
            "registered": registered,
        })
    return layers


def _measure_tensors(torch, entries, tensors, notes):
    """Fill the statistics of each entry from its tensor.

    Reads the results with one transfer per device and dtype for the weights and one for the
    gradients, plus one more only where a norm shows a NaN or Inf.
    """
    local_count = 0
    for entry, tensor in zip(entries, tensors):
        local = _local_tensor(tensor)
        if local is not tensor:
            local_count += 1
        entry["local"] = local is not tensor
        entry["placements"], entry["replicas"], entry["partial"] = _placements(tensor)
        entry["shape"] = list(tensor.shape)
        entry["dtype"] = str(tensor.dtype).replace("torch.", "")
        entry["device"] = str(local.device)
        entry["numel"] = int(tensor.numel())
        entry["requiresGrad"] = bool(tensor.requires_grad)
        grad = tensor.grad
        entry["hasGrad"] = grad is not None
        entry["gradSparse"] = bool(grad is not None and grad.layout != torch.strided)
        entry["gradNew"] = _is_new_gradient(tensor, grad)
        entry["gradPlacements"], entry["gradReplicas"], entry["gradPartial"] = _placements(grad)
        _clear_statistics(entry)

    if local_count:
        notes.append(
            "%d parameters are sharded (DTensor): their values are those of this rank's shard only." % local_count
        )

    meta = [entry for entry in entries if entry["device"] == "meta"]
    if meta:
        notes.append(
            "%d parameters are on the meta device: they have shapes but no values, so only shapes are reported."
            % len(meta)
        )

    weights = {}
    grads = {}
    for index, (entry, tensor) in enumerate(zip(entries, tensors)):
        if entry["device"] == "meta":
            continue
        weight = _dense_values(torch, _local_tensor(tensor))
        weights.setdefault(_group_key(weight), []).append((index, weight))
        if tensor.grad is not None:
            grad = _dense_values(torch, _local_tensor(tensor.grad))
            grads.setdefault(_group_key(grad), []).append((index, grad))

    for group in weights.values():
        _reduce_group(torch, entries, group, "weight")
    for group in grads.values():
        _reduce_group(torch, entries, group, "grad")
    _count_non_finite(torch, entries, weights, grads)


_last_gradients = {}


def _is_new_gradient(tensor, grad):
    """Return whether `grad` is another object than the .grad seen at this probe's last snapshot.

    Autograd accumulates into an existing .grad in place, so a new object means the gradient
    was set to None (zero_grad) in between. None when unknown: no gradient, or not seen before.
    Only weak references are kept, so the probe keeps no tensor alive.
    """
    key = id(tensor)
    previous = _last_gradients.get(key)
    result = None
    if previous is not None and previous[0]() is tensor and grad is not None:
        result = previous[1]() is not grad
    if grad is None:
        _last_gradients.pop(key, None)
    else:
        _last_gradients[key] = (weakref.ref(tensor), weakref.ref(grad))
    if len(_last_gradients) > 200_000:
        for stale in [k for k, (ref, _) in _last_gradients.items() if ref() is None]:
            del _last_gradients[stale]
    return result


def _clear_statistics(entry):
    for key in ("gradNorm", "gradMaxAbs", "gradNan", "gradInf", "weightNorm", "weightNan", "weightInf",
                "checksum", "gradChecksum"):
        entry[key] = None


def _placements(tensor):
    """Return how a DTensor is laid out over the ranks: (placements, replicas, partial).

    `placements` lists them as text, e.g. ["Shard(dim=0)"]. `replicas` is the number of ranks
    that have a copy of each local value, the product of the mesh sizes of the Replicate
    dimensions. The summed squares of all ranks' local values divided by it is the squared
    norm of the whole tensor. `partial` means that the local values are addends of the tensor (a Partial
    placement: a reduction not done yet), so no per-rank statistic gives its norm. All three
    are None for a tensor that is not a DTensor. Reading the mesh sizes sends nothing.
    """
    if not _is_dtensor(tensor):
        return None, None, None

    mesh = tensor.device_mesh
    replicas = 1
    partial = False
    for dimension, placement in enumerate(tensor.placements):
        if placement.is_replicate():
            replicas *= mesh.size(dimension)
        elif placement.is_partial():
            partial = True
    return [str(placement) for placement in tensor.placements], replicas, partial


def _is_dtensor(tensor):
    return tensor is not None and type(tensor).__name__ == "DTensor" and hasattr(tensor, "to_local")


def _local_tensor(tensor):
    """Return this rank's part of a DTensor, or the tensor itself; no communication happens."""
    return tensor.to_local() if _is_dtensor(tensor) else tensor


def _dense_values(torch, tensor):
    """Return a strided tensor whose norms equal the tensor's: the values of a sparse tensor."""
    if tensor.layout == torch.sparse_coo:
        return tensor.coalesce()._values()
    if tensor.layout in (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc):
        return tensor.values()
    return tensor.detach()


def _group_key(tensor):
    return (str(tensor.device), str(tensor.dtype))


def _reduce_group(torch, entries, group, kind):
    """Compute the norms of tensors on one device and dtype, then read them with one transfer.

    Gradients get their L2 norm and max |value|; weights get their L2 norm and a sample hash.
    On the CPU with torch 2.13, the L1 and infinity orders of `_foreach_norm` ran 5 to 20 times
    slower than its L2 order on VGG-16 (bench/probe_bench.py), so max |value| comes from
    `aminmax`, which reads each tensor once.
    """
    tensors = [tensor for _, tensor in group]
    if not (tensors[0].is_floating_point() or tensors[0].is_complex()):
        tensors = [tensor.float() for tensor in tensors]
    accumulate = torch.float32 if tensors[0].dtype in (torch.float16, torch.bfloat16) else None
    rows = [list(torch._foreach_norm(tensors, 2, dtype=accumulate))]
    if kind == "grad":
        rows.append([_max_abs(torch, tensor) for tensor in tensors])
    else:
        rows.append(_sample_hashes(torch, tensors))
    values = torch.stack([torch.stack(row).to(torch.float64) for row in rows]).cpu().tolist()

    for column, (index, _) in enumerate(group):
        entry = entries[index]
        l2_value = _finite_or_text(values[0][column])
        second = _finite_or_text(values[1][column])
        entry[kind + "Norm"] = l2_value
        if kind == "grad":
            entry["gradMaxAbs"] = second
            entry["gradChecksum"] = [l2_value, second]
        else:
            entry["checksum"] = [l2_value, second]
        entry[kind + "Nan"] = 0
        entry[kind + "Inf"] = 0


def _max_abs(torch, tensor):
    if tensor.numel() == 0:
        return torch.zeros((), dtype=torch.float32, device=tensor.device)
    if tensor.is_complex():
        return tensor.abs().max().float()
    low, high = torch.aminmax(tensor)
    return torch.maximum(high.abs(), low.abs()).float()


def _sample_hashes(torch, tensors):
    """Return, per tensor, a position-weighted sum of up to SAMPLE_SIZE elements spread over it.

    Norms alone miss updates that keep them constant: a BatchNorm weight of ones followed by
    another normalization layer gets gradients that sum to zero. Weighting by position catches
    those, and reading a sample keeps the cost at one small gather per tensor.
    """
    samples = []
    for tensor in tensors:
        flat = tensor.reshape(-1)
        count = flat.numel()
        if count == 0:
            samples.append(torch.zeros(SAMPLE_SIZE, dtype=torch.float32, device=tensor.device))
            continue
        indices = _sample_indices(torch, count, tensor.device)
        sample = flat.index_select(0, indices)
        samples.append(torch.view_as_real(sample).sum(-1).float() if sample.is_complex() else sample.float())
    position_weights = torch.arange(1, SAMPLE_SIZE + 1, dtype=torch.float32, device=tensors[0].device)
    return list(torch.stack(samples) @ position_weights)


_sample_index_cache = {}


def _sample_indices(torch, count, device):
    key = (count, str(device))
    indices = _sample_index_cache.get(key)
    if indices is None:
        step = max(1, count // SAMPLE_SIZE)
        indices = (torch.arange(SAMPLE_SIZE, device=device) * step) % count
        if len(_sample_index_cache) > 4096:
            _sample_index_cache.clear()
        _sample_index_cache[key] = indices
    return indices


def _count_non_finite(torch, entries, weights, grads):
    """Count NaN and Inf values, only in tensors whose norm already showed a non-finite value."""
    for kind, groups in (("weight", weights), ("grad", grads)):
        for group in groups.values():
            suspects = [(index, tensor) for index, tensor in group if _is_non_finite(entries[index][kind + "Norm"])]
            if not suspects:
                continue
            counts = torch.stack([
                torch.stack([torch.isnan(tensor).sum(), torch.isinf(tensor).sum()]) for _, tensor in suspects
            ]).cpu().tolist()
            overflowed = []
            for (index, tensor), (nan_count, inf_count) in zip(suspects, counts):
                entries[index][kind + "Nan"] = int(nan_count)
                entries[index][kind + "Inf"] = int(inf_count)
                if not nan_count and not inf_count:
                    overflowed.append((index, tensor))
            _recompute_overflowed_norms(torch, entries, kind, overflowed)


def _recompute_overflowed_norms(torch, entries, kind, overflowed):
    """Recompute in float64 the norms that overflowed their dtype although every value is finite."""
    if not overflowed:
        return
    norms = torch.stack([torch.linalg.vector_norm(tensor, 2, dtype=torch.float64) for _, tensor in overflowed])
    for (index, _), l2_value in zip(overflowed, norms.cpu().tolist()):
        entry = entries[index]
        entry[kind + "Norm"] = _finite_or_text(l2_value)
        entry["gradChecksum" if kind == "grad" else "checksum"][0] = entry[kind + "Norm"]


def _is_non_finite(value):
    return isinstance(value, str) or (isinstance(value, float) and not math.isfinite(value))


def _finite_or_text(value):
    """JSON has no NaN or Infinity: send them as the strings "nan", "inf" and "-inf"."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _describe_optimizer(torch, index, optimizer):
    groups = []
    markers = []
    for group_index, group in enumerate(optimizer.param_groups):
        betas = group.get("betas")
        groups.append({
            "index": group_index,
            "lr": _plain_number(group.get("lr")),
            "momentum": _plain_number(group.get("momentum")),
            "betas": [_plain_number(beta) for beta in betas] if isinstance(betas, (list, tuple)) else None,
            "weightDecay": _plain_number(group.get("weight_decay")),
            "parameters": len(group["params"]),
            "step": None,
            "stateNorm": None,
        })
        markers.append(_state_markers(torch, optimizer, group))

    _read_state_markers(torch, groups, markers)
    return {"index": index, "type": type(optimizer).__name__, "groups": groups}


def _state_markers(torch, optimizer, group):
    """Return the step count and first state tensor of the first parameter with optimizer state."""
    for p in group["params"]:
        state = optimizer.state.get(p)
        if not state:
            continue
        step = state.get("step")
        tensor = None
        for key, value in state.items():
            if key != "step" and isinstance(value, torch.Tensor) and value.numel() > 0:
                tensor = _local_tensor(value)
                break
        return step, tensor
    return None, None


def _read_state_markers(torch, groups, markers):
    """Read step counts and state norms of all groups with one transfer per device."""
    by_device = {}
    for position, (step, tensor) in enumerate(markers):
        if isinstance(step, torch.Tensor):
            by_device.setdefault(str(step.device), []).append((position, "step", step.detach().reshape(()).double()))
        elif step is not None:
            groups[position]["step"] = _plain_number(step)
        if tensor is not None and tensor.device.type != "meta":
            norm = torch._foreach_norm([_dense_values(torch, tensor)])[0].double()
            by_device.setdefault(str(tensor.device), []).append((position, "stateNorm", norm))

    for items in by_device.values():
        values = torch.stack([value for _, _, value in items]).cpu().tolist()
        for (position, key, _), value in zip(items, values):
            groups[position][key] = _finite_or_text(value)


def _plain_number(value):
    """Return a JSON number for a float, int or one-element tensor (an lr may be a tensor)."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return _finite_or_text(float(value)) if isinstance(value, float) else value
    try:
        return _finite_or_text(float(value))
    except (TypeError, ValueError, RuntimeError):
        return None


def _describe_distributed(torch, notes):
    distributed = getattr(torch, "distributed", None)
    if distributed is None or not distributed.is_available() or not distributed.is_initialized():
        return None

    # get_rank and get_world_size read the process group; they send nothing to other ranks.
    rank = distributed.get_rank()
    world_size = distributed.get_world_size()
    notes.append(
        "This is rank %d of %d in a distributed job: the values are this rank's only (local "
        "gradients before or after all-reduce, and shards of sharded parameters). The probe runs "
        "no collective operation, so the other ranks are not waited for." % (rank, world_size)
    )
    return {"rank": rank, "worldSize": world_size, "backend": str(distributed.get_backend())}


def _module_class(module):
    """Return the class of `module`, or the class it had before `fully_shard` (FSDP2) changed it.

    `fully_shard` gives a module a new class `FSDP<Name>` derived from `FSDPModule` and the old
    class. Names, source lookup and layer types use the old one.
    """
    mro = type(module).__mro__
    for position, cls in enumerate(mro[:-1]):
        if cls.__name__ == "FSDPModule" and cls.__module__.startswith("torch.distributed.fsdp"):
            return mro[position + 1]
    return type(module)


def _describe_model(model, registered, namespace):
    names = [name for name, value in (namespace or {}).items() if value is model and not name.startswith("__")]
    devices = sorted({entry["device"] for entry in registered})
    return {
        "type": _module_class(model).__name__,
        "module": _module_class(model).__module__,
        "names": names,
        "training": bool(model.training),
        "parameterCount": sum(entry["numel"] for entry in registered),
        "tensorCount": len(registered),
        "trainableCount": sum(entry["numel"] for entry in registered if entry["requiresGrad"]),
        "devices": devices,
        "meta": devices == ["meta"],
    }


def _class_files(model):
    """List [class name, source file] for the model's own module classes (not torch's).

    A list of pairs, not a dict: a class name is not a safe JSON key for every LSP library.
    """
    files = []
    seen = set()
    for module in model.modules():
        cls = _module_class(module)
        if cls.__module__.split(".")[0] == "torch" or cls in seen:
            continue
        seen.add(cls)
        path = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if path:
            files.append([cls.__name__, path])
    return files


# Helpers for the entry points.


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise ProbeError(
            "torch-missing",
            "torch cannot be imported in the debugged process (%s): select the interpreter of the "
            "environment where the training script's torch is installed" % error,
        ) from error
    return torch


def _merge_namespaces(frame_globals, frame_locals):
    namespace = dict(frame_globals or {})
    namespace.update(frame_locals or {})
    return namespace


def _call_user_expression(thunk, role):
    try:
        return thunk()
    except Exception as error:  # noqa: BLE001 - any error of the user's expression is reported
        message = "the %s expression failed: %s: %s" % (role, type(error).__name__, error)
        raise ProbeError("expression-failed", message) from error


def _guarded(function):
    """Run `function` and return its result as JSON, chunked when long, or an `error` result.

    Every `Exception` becomes an error result, so that nothing is printed in the debug console.
    """
    try:
        result = function()
    except ProbeError as error:
        return _to_json({"error": {"code": error.code, "message": error.message}})
    except Exception as error:  # noqa: BLE001 - an exception must not reach the debugger's console
        last = traceback.extract_tb(error.__traceback__)[-1]
        message = "gradsight probe failed: %s: %s (line %d, %s)" % (type(error).__name__, error, last.lineno, last.name)
        return _to_json({"error": {"code": "internal", "message": message}})
    return _store_if_long(_to_json(result))


def _to_json(value):
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _store_if_long(text):
    if len(text) <= CHUNK_SIZE:
        return text

    while len(_pending_payloads) >= MAX_PENDING_PAYLOADS:
        del _pending_payloads[next(iter(_pending_payloads))]
    token = uuid.uuid4().hex
    _pending_payloads[token] = [text[start:start + CHUNK_SIZE] for start in range(0, len(text), CHUNK_SIZE)]
    return _to_json({"chunked": {"token": token, "count": len(_pending_payloads[token])}})
