"""The sources ``swiftkit prep`` knows: one entry per name (reader, default system prompt, hub id).

Adding a source is adding one ``Source`` to ``SOURCES``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from datasets_prep.errors import SwiftkitError
from datasets_prep.readers import actions, generic, muice, reasoning
from datasets_prep.readers.base import (
    Converter,
    FileSpec,
    Item,
    convert_files,
    plain_files,
)
from datasets_prep.records import Conversation
from datasets_prep.scorefield import ScoreField
from datasets_prep.vocab import ACTIONS_LIST_HEAD

MUICE_SYSTEM = "你是一个名为沐雪的可爱AI女孩子"
FORTUNE_SYSTEM = (
    "你是一位精通八字算命、紫微斗数、风水、易经卦象、塔罗牌占卜、星象、面相手相和运势预测等方面的算命大师。请回答以下算命问题。"
)
MEDICAL_SYSTEM = "你是一个医学专家，你需要根据用户的问题，给出带有思考的回答。"
ACTIONS_INTRO = "回答用户的问题，根据需要可在下列动作中选择一个或多个执行，注意动作执行和问题回答的先后顺序。"
ACTIONS_PREFIX = ACTIONS_INTRO + ACTIONS_LIST_HEAD
GENERIC_SYSTEM = "You are a helpful assistant."


def actions_system(conv: Conversation, seed: int, intro: Optional[str] = None) -> str:
    """The seed's prompt: this record's actions, shuffled reproducibly from (seed, record), one per line.

    ``intro`` (``--system``) replaces the instruction before the list; the list itself is always kept, since the
    model can only pick actions it is shown.
    """
    acts = list(conv.actions or [])
    user = conv.turns[0]["content"] if conv.turns else ""
    random.Random(f"{seed}\x00{'、'.join(acts)}\x00{user}").shuffle(acts)
    head = ACTIONS_PREFIX if intro is None else intro + ACTIONS_LIST_HEAD
    return head + "\n".join(f"- {a}" for a in acts) + "\n"


@dataclass(frozen=True)
class Source:
    name: str
    convert: Converter  # one parsed record -> Conversation fields (raises FieldError)
    description: str
    system: Optional[str] = None
    system_builder: Optional[Callable[[Conversation, int, Optional[str]], str]] = None  # (record, seed, --system)
    hub_id: Optional[str] = None
    keep_system: bool = False  # generic shapes keep the data's own system prompt by default
    files: Callable[[Path], list[FileSpec]] = plain_files  # which files of --src to read, in order

    def read(self, specs: list[FileSpec], digests: Optional[dict[str, str]] = None,
             score_from: Optional[ScoreField] = None, *, encoding: Optional[str] = None,
             columns: Optional[dict[str, str]] = None) -> Iterator[Item]:
        return convert_files(specs, self.convert, digests, score_from, encoding=encoding, columns=columns)

    def default_system(self, conv: Conversation, seed: int, given: Optional[str] = None) -> str:
        """The record's system prompt: built per record where the source builds one (``given``, the --system
        text, replaces only its instruction), else the source's constant (prep writes a given --system itself)."""
        if self.system_builder is not None:
            return self.system_builder(conv, seed, given)
        assert self.system is not None
        return self.system


SOURCES: dict[str, Source] = {s.name: s for s in (
    Source("muice", muice.convert, "Muice (沐雪) role-play: every published shape, file or dataset folder",
           system=MUICE_SYSTEM, hub_id="modelscope://Moemuu/Muice-Dataset", files=muice.dataset_files),
    Source("fortune", reasoning.convert_fortune, "fortune-telling Question/Complex_CoT/Response (JSON, JSONL, CSV, Parquet)",
           system=FORTUNE_SYSTEM, hub_id="hf://Conard/fortune-telling"),
    Source("medical_r1", reasoning.convert_medical, "medical R1 question/think/answer (instruction/question aliasing handled)",
           system=MEDICAL_SYSTEM, hub_id="modelscope://krisfu/delicate_medical_r1_data"),
    Source("actions", actions.convert, "action selection CSV 行动/问题/回答; system lists the actions, shuffled",
           system_builder=actions_system),
    Source("general", generic.convert_messages, "general chat to mix into a persona's data at a ratio (recipe "
           "data.mix); ms-swift messages records, each keeping its own system prompt", system=GENERIC_SYSTEM,
           keep_system=True),
    Source("messages", generic.convert_messages, "generic ms-swift messages records", system=GENERIC_SYSTEM, keep_system=True),
    Source("sharegpt", generic.convert_sharegpt, "generic conversations from/value", system=GENERIC_SYSTEM, keep_system=True),
    Source("alpaca", generic.convert_alpaca, "generic instruction/input/output", system=GENERIC_SYSTEM, keep_system=True),
    Source("query_response", generic.convert_query_response, "generic query/response/history (self-cognition rows)",
           system=GENERIC_SYSTEM, keep_system=True),
)}

# The sources `make prep` converts from the bundled samples.
MAKE_ALL_SOURCES = ("muice", "fortune", "medical_r1", "actions", "general")


def get_source(name: str) -> Source:
    try:
        return SOURCES[name]
    except KeyError:
        raise SwiftkitError(f"unknown source '{name}'; choose from {', '.join(SOURCES)}") from None
