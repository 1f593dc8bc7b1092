"""Errors a VLA policy raises on bad inputs and bad checkpoints (both are ValueErrors)."""

from __future__ import annotations


class PolicyInputError(ValueError):
    """Observations, a dataset or stats that do not fit the policy config (names both sides and the fix)."""


class PolicyCheckpointError(ValueError):
    """A policy checkpoint folder that is missing files or holds a different head than asked for."""
