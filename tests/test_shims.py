"""Shims: the GELUTanh/PytorchGELUTanh alias in both directions, idempotent, a no-op where not needed; no empty
optimizer param groups (LoRA + DeepSpeed ZeRO)."""
from __future__ import annotations

import json
import sys
import types

import pytest

from swiftkit.stack import shims
from swiftkit.train import worker


class _Gelu:  # stands in for the activation class
    pass


@pytest.fixture
def fake_activations(monkeypatch):
    monkeypatch.setattr(shims, "SHIMS", {"gelu_tanh_alias": shims.SHIMS["gelu_tanh_alias"]})  # this shim alone

    def make(**names):
        mod = types.ModuleType("transformers.activations")
        for k, v in names.items():
            setattr(mod, k, v)
        monkeypatch.setitem(sys.modules, "transformers.activations", mod)
        return mod
    return make


def test_alias_new_name_from_old(fake_activations):  # transformers <= 4.56
    mod = fake_activations(PytorchGELUTanh=_Gelu)
    assert shims.status() == {"gelu_tanh_alias": True}
    assert shims.apply_all() == ["gelu_tanh_alias"]
    assert mod.GELUTanh is _Gelu and mod.PytorchGELUTanh is _Gelu
    assert shims.apply_all() == []  # idempotent
    assert shims.status() == {"gelu_tanh_alias": False}


def test_alias_old_name_from_new(fake_activations):  # transformers >= 4.57
    mod = fake_activations(GELUTanh=_Gelu)
    assert shims.apply_all() == ["gelu_tanh_alias"]
    assert mod.PytorchGELUTanh is _Gelu and mod.GELUTanh is _Gelu


def test_no_op_when_both_or_neither_exist(fake_activations):
    other = type("Other", (), {})
    mod = fake_activations(GELUTanh=_Gelu, PytorchGELUTanh=other)
    assert shims.apply_all() == []
    assert mod.PytorchGELUTanh is other  # never overwrites an existing name
    fake_activations()
    assert shims.apply_all() == []


def test_real_transformers_gets_both_names():
    import transformers.activations as act

    shims.apply_all()
    assert act.GELUTanh is act.PytorchGELUTanh


def test_worker_records_shim_evidence(tmp_path, fake_activations):
    fake_activations(PytorchGELUTanh=_Gelu)
    applied = shims.apply_all()
    path = worker.record_shims(tmp_path, 3, applied)
    assert path == tmp_path / "swiftkit_shims" / "rank3.json"
    assert json.loads(path.read_text()) == {"rank": 3, "applied": ["gelu_tanh_alias"],
                                            "holds": {"gelu_tanh_alias": True}}


def test_no_empty_optimizer_param_group_for_all_decay_parameters(tmp_path):
    """LoRA-like: every trainable parameter decays, so transformers builds an empty no-decay group, which DeepSpeed
    ZeRO later removes behind the LR scheduler's back (torch's strict zip then fails at step 1)."""
    import torch
    from transformers import Trainer, TrainingArguments

    shims.apply_all()
    assert shims.status()["drop_empty_param_groups"] is False
    model = torch.nn.Sequential(torch.nn.Linear(4, 4, bias=False))
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[]))
    optimizer = trainer.create_optimizer()
    assert [len(g["params"]) for g in optimizer.param_groups] == [1]
    scheduler = trainer.create_scheduler(10, optimizer)
    optimizer.param_groups[:] = [g for g in optimizer.param_groups if g["params"]]  # what DeepSpeed does
    scheduler.step()  # would raise "zip() argument 2 is longer than argument 1" with the empty group counted
