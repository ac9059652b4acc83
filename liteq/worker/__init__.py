"""The worker: claims tasks, runs them in a pool, acks them with their results."""

from __future__ import annotations

from .worker import Worker

__all__ = ["Worker"]
