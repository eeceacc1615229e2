"""Errors meant for operators: one line saying what was expected, what was found, what to do."""

from __future__ import annotations


class MetalserveError(Exception):
    """Base of every error metalserve reports to a person instead of a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(MetalserveError):
    """Inventory data that does not describe a valid host.

    Example::

        SpecError.at("gpu01", "metalserve.engine.port", "must be 1-65535 (got 0)",
                     "set a free TCP port")
    """

    @classmethod
    def at(cls, host: str, field: str, problem: str, fix: str) -> SpecError:
        return cls(f"host {host}: {field}: {problem} — fix: {fix}")


class PlanError(MetalserveError):
    """A valid spec that cannot be turned into a working plan (does not fit, unsupported flag...)."""


class ParseError(MetalserveError):
    """Command output that could not be understood."""
