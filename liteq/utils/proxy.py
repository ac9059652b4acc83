"""Celery's ``current_app`` and ``current_task``: objects that stand for another, found anew each use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Proxy:
    """Stands for whatever ``get()`` returns at the moment it is used.

    Attribute access, ``repr``, truth, equality and ``isinstance`` go to that
    object, as with Celery's ``current_app.conf`` or
    ``current_task.request.id``. Calling the proxy with no arguments returns
    the object itself (``current_app()``, liteq's spelling); with arguments,
    it calls the object.
    """

    __slots__ = ("__get",)

    def __init__(self, get: Callable[[], Any]) -> None:
        object.__setattr__(self, "_Proxy__get", get)

    def _get_current_object(self) -> Any:
        """Return the object the proxy stands for now (Celery's name)."""
        return self.__get()

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # noqa: D105 - makes isinstance() see the object's class
        return type(self.__get())

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__get(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__get(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.__get(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        target = self.__get()
        if not args and not kwargs:
            return target
        return target(*args, **kwargs)

    def __bool__(self) -> bool:
        return bool(self.__get())

    def __eq__(self, other: object) -> bool:
        return bool(self.__get() == other)

    def __ne__(self, other: object) -> bool:
        return bool(self.__get() != other)

    def __hash__(self) -> int:
        return hash(self.__get())

    def __repr__(self) -> str:
        return repr(self.__get())

    def __str__(self) -> str:
        return str(self.__get())
