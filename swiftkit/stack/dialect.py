"""The ms-swift command-line dialect: one table of what changed between major releases, consulted in one place.

swiftkit writes every argument list in the 3.x dialect (3.12.x is the supported release) and translates it when
another supported major is installed. ms-swift rejects unknown flags (``remaining_argv``), so an argument list in
the wrong dialect fails at startup; translating here, or refusing with one line, is what keeps that from happening.

Differences 3.x -> 4.x (checked by hand against an installed ms-swift 4.6.0):

- ``--train_type`` became ``--tuner_type`` (the old name was removed in 4.1);
- ``--custom_register_path`` became ``--external_plugins``;
- model type ``qwen2_5`` became ``qwen2``; ``--infer_backend pt`` became ``transformers``;
- the entry points (``sft_main``, ``rlhf_main``) are imported from ``swift`` instead of ``swift.llm``.

Checked once by hand against an installed ms-swift 4.6.0 (with transformers 4.56.2): every recipe's 1-GPU argument
list, QLoRA variants included, translated by :data:`SWIFT4`, names only ``SftArguments`` fields and parses with no
leftover; untranslated, ``--train_type`` is unknown there. CI installs 3.12.6 only, so the tests check the table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from swiftkit.core.errors import SwiftkitError
from swiftkit.stack.versions import SUPPORTED, installed

SUPPORTED_RANGE = SUPPORTED["ms-swift"]
"""The ms-swift release swiftkit is written and tested against (stated once, in :data:`swiftkit.stack.versions.SUPPORTED`)."""


API3: dict[str, str] = {
    # entry points
    "sft_main": "swift.llm:sft_main", "rlhf_main": "swift.llm:rlhf_main", "infer_main": "swift.llm:infer_main",
    "deploy_main": "swift.llm:deploy_main", "export_main": "swift.llm:export_main",
    "try_use_single_device_mode": "swift.cli.utils:try_use_single_device_mode",
    # argument classes (what each entry point parses)
    "TrainArguments": "swift.llm:TrainArguments", "RLHFArguments": "swift.llm:RLHFArguments",
    "InferArguments": "swift.llm:InferArguments", "DeployArguments": "swift.llm:DeployArguments",
    "ExportArguments": "swift.llm:ExportArguments",
    "BaseArguments": "swift.llm.argument.base_args.base_args:BaseArguments",
    # models, templates, registries
    "get_model_tokenizer": "swift.llm:get_model_tokenizer", "get_template": "swift.llm:get_template",
    "MODEL_MAPPING": "swift.llm:MODEL_MAPPING", "TEMPLATE_MAPPING": "swift.llm:TEMPLATE_MAPPING",
    "get_matched_model_meta": "swift.llm:get_matched_model_meta",
    "get_matched_model_types": "swift.llm.model.register:get_matched_model_types",
    "safe_snapshot_download": "swift.llm:safe_snapshot_download",
    # inference engine, rewards
    "PtEngine": "swift.llm.infer.infer_engine.pt_engine:PtEngine",
    "orms": "swift.plugin:orms",
}
"""Where ms-swift 3.x keeps each object swiftkit uses: ``module:attribute``. The one list of swiftkit's touches."""


@dataclass(frozen=True)
class Dialect:
    """How one ms-swift major spells the 3.x argument list, and where it keeps what swiftkit uses."""

    name: str
    flag_renames: Mapping[str, str] = field(default_factory=dict)
    value_renames: Mapping[tuple[str, str], str] = field(default_factory=dict)
    api: Mapping[str, str] = field(default_factory=lambda: dict(API3))
    """Each name of :data:`API3` -> ``module:attribute`` in this major (the same keys in every dialect)."""
    engine_survives_errors: bool = False
    """The transformers inference engine hands an exception in one batch to that batch's requests and carries on
    (4.x). 3.12's worker thread dies and the server hangs: swiftkit's deploy child patches it there only."""

    def value(self, flag: str, value: str) -> str:
        """How this major spells ``value`` of ``--flag`` (``model_type qwen2_5`` is ``qwen2`` in 4.x)."""
        return self.value_renames.get((flag, value), value)

    def translate(self, argv: Sequence[str]) -> list[str]:
        """Translate a 3.x ``swift sft`` argument list (flags as ``--name value...``) to this dialect."""
        out: list[str] = []
        current: str | None = None
        for token in argv:
            if token.startswith("--"):
                current = token[2:]
                out.append("--" + self.flag_renames.get(current, current))
            else:
                out.append(self.value_renames.get((current, token), token) if current else token)
        return out


API4: dict[str, str] = {
    **API3,
    "sft_main": "swift:sft_main", "rlhf_main": "swift:rlhf_main", "infer_main": "swift:infer_main",
    "deploy_main": "swift:deploy_main", "export_main": "swift:export_main",
    "TrainArguments": "swift:SftArguments", "RLHFArguments": "swift:RLHFArguments",
    "InferArguments": "swift:InferArguments", "DeployArguments": "swift:DeployArguments",
    "ExportArguments": "swift:ExportArguments", "BaseArguments": "swift:BaseArguments",
    "get_model_tokenizer": "swift:get_model_processor", "get_template": "swift:get_template",
    "MODEL_MAPPING": "swift.model:MODEL_MAPPING", "TEMPLATE_MAPPING": "swift.template.register:TEMPLATE_MAPPING",
    "get_matched_model_meta": "swift.model:get_matched_model_meta",
    "get_matched_model_types": "swift.model.model_meta:get_matched_model_types",
    "safe_snapshot_download": "swift:safe_snapshot_download",
    "PtEngine": "swift.infer_engine.transformers_engine:TransformersEngine",
    "orms": "swift.rewards.orm:orms",
}
"""ms-swift 4.x: ``swift.llm`` is gone (checked against an installed 4.6.0)."""

SWIFT3 = Dialect(name="3.x")
SWIFT4 = Dialect(
    name="4.x",
    flag_renames={"train_type": "tuner_type", "custom_register_path": "external_plugins"},
    value_renames={("model_type", "qwen2_5"): "qwen2", ("infer_backend", "pt"): "transformers"},
    api=API4,
    engine_survives_errors=True,
)


def patches(dialect: "Dialect") -> list[tuple[str, bool, str]]:
    """(name, live with this dialect, what it does) of every patch swiftkit puts into ms-swift: `swiftkit doctor`
    lists them."""
    return [
        ("run_args_are_data", True, "a checkpoint's args.json imports no plugin unless --trust-run-code "
                                    "(swiftkit.stack.guards)"),
        ("serve_guard", True, "swiftkit serve: key on every /v1 path, size and idle limits, over-long refused alone "
                              "(swiftkit.deploy.deploy_child)"),
        ("engine_survives_errors", not dialect.engine_survives_errors,
         "swiftkit serve: an error in one batch fails that batch, not the engine thread (ms-swift 3.x only)"),
    ]


HYBRID_THINKING_TEMPLATES: frozenset[str] = frozenset({
    "deepseek_v3_1", "glm4_5", "glm4_5v", "glm4_7", "hunyuan", "minicpmv4_5", "qwen3", "youtu_llm"})
"""Chat templates that think or not by a switch (a thinking prefix and a non-thinking one). ms-swift 3.12 defaults
them to thinking; 4.3.1 and later to not thinking (PR #9557), which would silently change what a recipe trains and
answers. swiftkit passes ``--enable_thinking true`` for them (:func:`pinned_flags`), so a recipe means the same on
both majors. tests/test_plan.py checks this set against the installed ms-swift's registry."""


def pinned_flags(template: str | None) -> list[str]:
    """Flags that fix a default which changed between majors, for a run with ``template``: 3.12's meaning."""
    return ["--enable_thinking", "true"] if template in HYBRID_THINKING_TEMPLATES else []


def flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value after ``--name`` in an ms-swift argument list (its first value for a list flag); None when absent."""
    flag = f"--{name}"
    for i, token in enumerate(argv[:-1]):
        if token == flag:
            return argv[i + 1]
    return None


def installed_dialect() -> Dialect:
    """The dialect of the ms-swift installed here (one-line SwiftkitError when none or an unsupported one)."""
    return dialect_for(installed("ms-swift"))


def swift_api(name: str) -> Any:
    """The ms-swift object ``name`` (a key of :data:`API3`: an entry point, an argument class, a registry, the
    inference engine) from wherever the installed major keeps it. This is the only place swiftkit imports ms-swift
    (tests/test_layout.py enforces it); a missing object is one line naming the dialect."""
    import importlib

    dialect = installed_dialect()
    where = dialect.api.get(name)
    if where is None:
        raise KeyError(f"{name!r} is not an ms-swift object swiftkit uses (swiftkit.stack.dialect.API3)")
    module, _, attr = where.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise SwiftkitError(f"ms-swift {installed('ms-swift')} ({dialect.name} dialect) has no {where}: "
                            f"{type(exc).__name__}: {exc}") from exc


def installed_entry(name: str):
    """A function (``sft_main``, ``rlhf_main``, ``deploy_main``) of the installed ms-swift, wherever its major
    release keeps it."""
    return swift_api(name)


def dialect_for(version: str | None) -> Dialect:
    """The dialect of an installed ms-swift version; one-line SwiftkitError when it is missing or unsupported."""
    if not version:
        raise SwiftkitError(f"ms-swift is not installed; swiftkit supports ms-swift {SUPPORTED_RANGE}")
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise SwiftkitError(f"ms-swift {version}: unreadable version; swiftkit supports ms-swift {SUPPORTED_RANGE}")
    if major == 3 and minor >= 12:
        return SWIFT3
    if major == 4:
        return SWIFT4
    raise SwiftkitError(
        f"ms-swift {version} is installed; swiftkit supports ms-swift {SUPPORTED_RANGE} (4.x is translated)"
    )


def load_template(tokenizer_dir: str, *, model_type: Optional[str], template: Optional[str],
                  **kwargs: Any) -> Any:
    """ms-swift's chat template for a tokenizer folder (``template`` None: the model's own), in train mode unset;
    ``kwargs`` are get_template's keywords (default_system, max_length, truncation_strategy, loss_scale, ...).

    3.x takes the template name first (``get_template(name, tokenizer, ...)``), 4.x the processor first and the
    name as ``template_type=``; the tokenizer comes from ``get_model_tokenizer`` (3.x) / ``get_model_processor``
    (4.x), without weights."""
    dialect = installed_dialect()  # names arrive in the 3.x spelling
    model_type = dialect.value("model_type", model_type) if model_type else model_type
    template = dialect.value("template", template) if template else template
    _, tokenizer = swift_api("get_model_tokenizer")(tokenizer_dir, load_model=False, model_type=model_type)
    name = template or tokenizer.model_meta.template
    get_template = swift_api("get_template")
    if dialect is SWIFT3:
        return get_template(name, tokenizer, **kwargs)
    return get_template(tokenizer, template_type=name, **kwargs)
