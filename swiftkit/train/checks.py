"""The preflight vocabulary: one :class:`Check` per verdict, the :class:`PreflightReport` that collects them, and the
error that lists every failure at once. Shared by the preflight of every method (train/preflight.py, train/grpo/)."""
from __future__ import annotations

from dataclasses import dataclass, field

from swiftkit.core.errors import ProblemsError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.name}: {self.message}"


@dataclass
class PreflightReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def lines(self) -> list[str]:
        return [c.line() for c in self.checks]

    def raise_if_failed(self) -> None:
        if not self.ok:
            raise PreflightError([f"{c.name}: {c.message}" for c in self.failures])


class PreflightError(ProblemsError):
    """Every failed preflight check, one line each, under "preflight failed:"."""

    heading = "preflight failed:"
