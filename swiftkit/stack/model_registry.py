"""The model_type and chat template ms-swift will train a recipe's model with, from the installed ms-swift's own
registry. Preflight names them, and refuses what ms-swift would fail on after the weights load: a model_type or
template name it does not have, or a model it cannot type (it would then train with a placeholder template).

A ``--set model=<hub id>`` that changes the model drops the recipe's model_type and template (swiftkit.train.recipes), so
the new model's come from here, exactly as ``swift sft --model X`` picks them; a local folder keeps the recipe's, and
they must fit its config.json architectures."""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterable, Optional


@dataclass(frozen=True)
class Resolved:
    model_type: Optional[str]
    template: Optional[str]
    source: str
    """Where they came from: "recipe", or which of them ms-swift's registry supplied."""
    problems: list[str] = field(default_factory=list)


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"{kind} {name!r} is not one the installed ms-swift has{hint}"


def resolve(model: str, model_type: Optional[str], template: Optional[str],
            architectures: Optional[list[str]] = None) -> Resolved:
    """What ms-swift will use for ``model`` given the recipe's ``model_type`` and ``template`` (None: ms-swift
    picks). ``architectures`` is the local model's config.json list (None for a hub id)."""
    from swiftkit.stack.dialect import installed_dialect, swift_api

    dialect = installed_dialect()  # recipes spell names as 3.x does
    model_type = dialect.value("model_type", model_type) if model_type else model_type
    template = dialect.value("template", template) if template else template
    MODEL_MAPPING, TEMPLATE_MAPPING = swift_api("MODEL_MAPPING"), swift_api("TEMPLATE_MAPPING")
    get_matched_model_meta, get_matched_model_types = (swift_api("get_matched_model_meta"),
                                                       swift_api("get_matched_model_types"))

    problems: list[str] = []
    picked: list[str] = []
    if model_type is not None and model_type not in MODEL_MAPPING:
        problems.append(_unknown("model_type", model_type, MODEL_MAPPING))
    if template is not None and template not in TEMPLATE_MAPPING:
        problems.append(_unknown("template", template, TEMPLATE_MAPPING))
    fitting = get_matched_model_types(architectures) if architectures else []
    if model_type in MODEL_MAPPING and fitting and model_type not in fitting:
        problems.append(f"{model} is a {architectures[0]}, which ms-swift types as {', '.join(fitting[:6])}, not "
                        f"model_type {model_type}: --set model_type=... template=...")
    if model_type is None:
        meta = get_matched_model_meta(model)  # by the model's name, as ms-swift does first
        if meta and meta.model_type:
            candidates = [meta.model_type]
        else:  # a local folder: by its config's architectures (a hub id's config is not here to read)
            candidates = fitting
        if len(candidates) == 1:
            model_type = candidates[0]
            picked.append("model_type")
        else:
            among = f" (it could be any of {', '.join(candidates[:6])})" if candidates else ""
            problems.append(f"ms-swift cannot tell {model}'s model_type{among}: --set model_type=... template=...")
    if template is None and model_type in MODEL_MAPPING:
        template = MODEL_MAPPING[model_type].template
        picked.append("template")
    source = "recipe" if not picked else f"{' and '.join(picked)} from ms-swift's registry"
    return Resolved(model_type, template, source, problems)
