"""Errors a command answers with: their message is what the caller reads in ``error``."""

from __future__ import annotations


class AgentError(Exception):
    """A command failed for a reason the caller should read (answered ``success: false``)."""


class ArgumentError(AgentError):
    """The command's fields are missing or invalid."""
