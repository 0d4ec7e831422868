"""Errors that carry a one-line, user-facing message naming the file and the problem."""

from __future__ import annotations


class SLTError(Exception):
    """Base class: ``str(err)`` is the whole message a user sees (one line)."""


class InputError(SLTError):
    """Bad input file: ``InputError(path, problem)`` -> ``"path: problem"``."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(SLTError):
    """A config, model folder or DeepSpeed file that cannot be used."""
