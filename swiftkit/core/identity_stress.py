"""The identity stress suite: the harder identity questions, versioned, by family (``identity_stress.json`` beside
this module), and how they are asked and summed up.

The plain questions (:data:`swiftkit.core.identity.IDENTITY_PROMPTS`) are what `swiftkit check` gates on; the suite
asks what users ask next: leading questions ("你是不是通义千问？"), the base model ("你的底层模型是什么？"), override
attempts, English, a user who insists over several turns, role-play frames. Every answer is judged by the one rule,
:func:`swiftkit.core.identity.judge_identity`. `check` reports the rate per family (gating only with
``--stress-gate``), `eval` puts base and tuned side by side per family, and a recipe's ``watch:`` asks a few of them
during training (swiftkit.train.watch).

A probe is the conversation after the system message: its last turn is the user's and only that answer is judged.
Earlier assistant turns are fixed text that holds the persona (``{persona}``: its name, else the probe language's
fallback), so every model meets the same pressure and a probe is one generation.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from swiftkit.core.errors import SwiftkitError
from swiftkit.core.identity import IDENTITY_PROMPTS, judge_identity

SUITE_FILE = Path(__file__).with_name("identity_stress.json")
PLAIN = "plain"
"""The family name of the plain questions (IDENTITY_PROMPTS) where they are listed beside the suite's."""
CONDITIONS = ("run system", "no system")
"""The conditions the suite is asked under: the run's system prompt, and none (the saved template's default)."""


@dataclass(frozen=True)
class Probe:
    """One stress question: ``turns`` without the system message, ending with the user's."""

    id: str
    family: str
    lang: str
    turns: tuple[Mapping[str, str], ...]

    @property
    def prompt(self) -> str:
        """The last user turn: the question whose answer is judged."""
        return self.turns[-1]["content"]

    def messages(self, system: Optional[str], name: Optional[str], fallback: Mapping[str, str]) -> list[dict]:
        """The conversation sent: the system message (when there is one), then the turns with ``{persona}`` filled."""
        persona = name or fallback.get(self.lang, "")
        head = [{"role": "system", "content": system}] if system is not None else []
        return head + [{"role": t["role"], "content": t["content"].replace("{persona}", persona)} for t in self.turns]


@dataclass(frozen=True)
class Suite:
    version: int
    families: Mapping[str, str]
    """family -> what it asks (in the file's order)."""
    probes: tuple[Probe, ...]
    persona_fallback: Mapping[str, str]

    def first(self, per_family: int) -> list[Probe]:
        """The first ``per_family`` probes of each family, in file order (the watch asks a few)."""
        taken: dict[str, int] = {}
        out = []
        for probe in self.probes:
            if taken.get(probe.family, 0) < per_family:
                taken[probe.family] = taken.get(probe.family, 0) + 1
                out.append(probe)
        return out


def _problems(data: Any, where: str) -> list[str]:
    if not isinstance(data, dict):
        return [f"{where}: expected a JSON object"]
    out = []
    if not isinstance(data.get("version"), int):
        out.append(f"{where}: field version: an integer")
    families = data.get("families")
    if not isinstance(families, dict) or not families:
        return out + [f"{where}: field families: an object family -> description"]
    probes = data.get("probes")
    if not isinstance(probes, list) or not probes:
        return out + [f"{where}: field probes: a non-empty list"]
    seen: set[str] = set()
    for i, probe in enumerate(probes):
        at = f"{where}: probes[{i}]"
        if not isinstance(probe, dict):
            out.append(f"{at}: expected an object")
            continue
        if not isinstance(probe.get("id"), str) or probe["id"] in seen:
            out.append(f"{at}: field id: a string, unique in the suite")
        seen.add(str(probe.get("id")))
        if probe.get("family") not in families:
            out.append(f"{at}: field family: {probe.get('family')!r} is not one of {', '.join(families)}")
        turns = probe.get("turns")
        roles = [t.get("role") for t in turns] if isinstance(turns, list) and all(isinstance(t, dict) for t in turns) \
            else None
        if not roles or roles != ["user", "assistant"] * (len(roles) // 2) + ["user"] or not all(
                isinstance(t.get("content"), str) and t["content"].strip() for t in turns):
            out.append(f"{at}: field turns: user/assistant turns with text, alternating, ending with the user's")
    return out


@functools.lru_cache(maxsize=4)
def load_suite(path: str | Path = SUITE_FILE) -> Suite:
    """The suite in ``path`` (default: the one swiftkit ships); every problem at once, one line each."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise SwiftkitError(f"{where}: unreadable ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise SwiftkitError(f"{where}:{exc.lineno}: not JSON ({exc.msg})") from exc
    problems = _problems(data, where)
    if problems:
        raise SwiftkitError("; ".join(problems))
    probes = tuple(Probe(p["id"], p["family"], str(p.get("lang", "zh")),
                         tuple({"role": t["role"], "content": t["content"]} for t in p["turns"]))
                   for p in data["probes"])
    return Suite(data["version"], dict(data["families"]), probes, dict(data.get("persona_fallback") or {}))


def asked_conditions(system: Optional[str]) -> dict[str, Optional[str]]:
    """condition -> the system message sent (None: no system message); a run without one is asked under none only."""
    return {c: s for c, s in zip(CONDITIONS, (system, None)) if c == "no system" or s}


def questions(suite: Suite, system: Optional[str], name: Optional[str], *, plain: bool = False,
              per_family: Optional[int] = None) -> list[dict[str, Any]]:
    """Every question under every condition, as rows ``{family, probe, condition, prompt, turns, messages}``;
    ``plain`` puts the plain IDENTITY_PROMPTS first (family ``plain``), ``per_family`` takes the first few."""
    probes = suite.probes if per_family is None else suite.first(per_family)
    rows = []
    for condition, sys_text in asked_conditions(system).items():
        if plain:
            for i, prompt in enumerate(IDENTITY_PROMPTS, 1):
                turns = [{"role": "user", "content": prompt}]
                rows.append({"family": PLAIN, "probe": f"{PLAIN}-{i}", "condition": condition, "prompt": prompt,
                             "turns": 1, "messages": ([{"role": "system", "content": sys_text}]
                                                      if sys_text is not None else []) + turns})
        for probe in probes:
            rows.append({"family": probe.family, "probe": probe.id, "condition": condition, "prompt": probe.prompt,
                         "turns": (len(probe.turns) + 1) // 2,
                         "messages": probe.messages(sys_text, name, suite.persona_fallback)})
    return rows


def family_summary(rows: Iterable[Mapping[str, Any]], answer_key: str, name: Optional[str]) -> dict[str, dict[str, int]]:
    """Per family (in row order): ``asked``, ``held`` (no forbidden identity claimed) and ``named`` (the persona's
    name, no claim), each answer judged by :func:`judge_identity`."""
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        verdict = judge_identity(row.get(answer_key), name)
        tally = out.setdefault(row["family"], {"asked": 0, "held": 0, "named": 0})
        tally["asked"] += 1
        tally["held"] += verdict != "claims"
        tally["named"] += verdict == "named"
    return out
