"""Paths Celery users import from (``celery.utils.log``)."""

from __future__ import annotations
