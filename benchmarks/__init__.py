"""Benchmarks of liteq against Celery, Huey and RQ, measured in the same run.

Run ``python -m benchmarks run --help``; see ``benchmarks/README.md``.
Nothing in ``liteq/`` imports this package.
"""

from __future__ import annotations
