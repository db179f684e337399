"""Errors a user can act on, each with the exit code scripts can rely on.

Exit codes (documented in the README):
  0  success
  1  an operation failed at run time (cloud API error, upstream unavailable, ...)
  2  invalid input (decision file, catalog, arguments)
  3  infeasible: no option satisfies all three corners; the message names the one to relax
  4  a required tool or credential is missing (Pulumi CLI, AWS credentials, optional extra)
  5  a change was applied only in part (the message says what was and was not applied)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_INFEASIBLE = 3
EXIT_MISSING = 4
EXIT_PARTIAL = 5


class DeployError(Exception):
    """Base for errors that carry a user-facing message and an exit code (never a traceback)."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or []

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "exit_code": self.exit_code,
            "message": self.message,
            "hint": self.hint,
            "details": self.details,
        }

    def render(self) -> str:
        lines = [f"error: {self.message}"]
        lines += [f"  {d}" for d in self.details]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class InvalidInput(DeployError):
    exit_code = EXIT_INVALID


class Infeasible(DeployError):
    exit_code = EXIT_INFEASIBLE


class MissingDependency(DeployError):
    exit_code = EXIT_MISSING


class PartialChange(DeployError):
    exit_code = EXIT_PARTIAL


class OperationFailed(DeployError):
    exit_code = EXIT_FAILED
