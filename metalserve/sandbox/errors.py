"""Operator errors of the sandbox, each with the exit code the CLI uses."""

from __future__ import annotations

from metalserve.errors import MetalserveError


class SandboxError(MetalserveError):
    """The sandbox could not do what was asked (one line: expected, found, fix)."""

    exit_code = 1


class PrerequisiteError(SandboxError):
    """A tool or privilege the sandbox needs is missing on the control host."""

    exit_code = 2
