"""Services and API interceptors: the extension points the API bus routes through.

A service declares the messages it handles with :func:`handles` on its
methods (a handler returns an inventory dict, a list of them, a
``QueryResult`` or None) and lists its ``Query<Resource>`` messages in
``queries`` (answered by the generic query engine).  Its ``interceptors`` see
its messages first and may refuse them with an ``OperationError``.

Interceptors run in a deterministic order: by position (SYSTEM, FRONT,
DEFAULT, END), then ``priority`` (lower first), then class name.  A service's
own interceptors count as DEFAULT; global interceptors (plugins implementing
:class:`GlobalApiInterceptor`) default to FRONT.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from enum import IntEnum
from typing import Any, ClassVar, TypeVar

from core.kernel.api import ApiMessage
from core.kernel.query import QueryMessage

M = TypeVar("M", bound=ApiMessage)
Handler = Callable[[Any, Any], Awaitable[Any]]


class InterceptorPosition(IntEnum):
    """In execution order."""

    SYSTEM = 0
    FRONT = 1
    DEFAULT = 2
    END = 3


class ApiInterceptor(ABC):
    """Validates (or rewrites) a message before its service sees it."""

    position: ClassVar[InterceptorPosition] = InterceptorPosition.DEFAULT
    priority: ClassVar[int] = 0

    @abstractmethod
    async def intercept(self, msg: ApiMessage) -> ApiMessage:
        """Return the message (or a replacement); raise OperationError to refuse it."""

    def sort_key(self) -> tuple[int, int, str]:
        return (int(self.position), self.priority, type(self).__qualname__)


class GlobalApiInterceptor(ApiInterceptor):
    """An extension point: an interceptor for every message of ``message_types``.

    ``message_types`` None means every API message.
    """

    position: ClassVar[InterceptorPosition] = InterceptorPosition.FRONT
    message_types: ClassVar[tuple[type[ApiMessage], ...] | None] = None

    def applies_to(self, msg: ApiMessage) -> bool:
        return self.message_types is None or isinstance(msg, self.message_types)


def handles(*message_types: type[ApiMessage]) -> Callable[[Handler], Handler]:
    """Mark a service method as the handler of these messages."""

    def mark(fn: Handler) -> Handler:
        fn.__handles__ = message_types  # type: ignore[attr-defined]
        return fn

    return mark


class Service(ABC):
    """An extension point: a named service that answers API messages."""

    service_id: ClassVar[str]
    queries: ClassVar[tuple[type[QueryMessage], ...]] = ()

    def api_interceptors(self) -> list[ApiInterceptor]:
        """Interceptors that see every message this service handles, before it does."""
        return []

    def api_handlers(self) -> dict[type[ApiMessage], Callable[[Any], Awaitable[Any]]]:
        found: dict[type[ApiMessage], Callable[[Any], Awaitable[Any]]] = {}
        for klass in reversed(type(self).__mro__):
            for attr, fn in vars(klass).items():
                for msg_type in getattr(fn, "__handles__", ()):
                    found[msg_type] = getattr(self, attr)
        return found

    @classmethod
    def declared_messages(cls) -> list[type[ApiMessage]]:
        """The messages the class answers (its handlers' and its queries), without an
        instance: what ``zcli help`` lists when no node runs."""
        found: list[type[ApiMessage]] = []
        for klass in reversed(cls.__mro__):
            for fn in vars(klass).values():
                found += getattr(fn, "__handles__", ())
        return found + list(cls.queries)
