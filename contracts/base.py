"""The base of every typed contract: a JSON object with ZStack's camelCase names on the
wire and snake_case attributes in Python.

A command is a :class:`Request` subclass naming its path, whether it is asynchronous, and
(as its type parameter) its :class:`Reply`: ``class StartVmCmd(Request[StartVmRsp])``.
A request refuses a field it does not declare (a caller's typo fails where it is made); a
reply ignores one (an older core still reads a newer agent).  The envelope's ``success``
and ``error`` are not part of a reply: the caller checks them before the reply is read.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Wire(BaseModel):
    """A JSON object: camelCase on the wire, snake_case here; either name builds one."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def to_json(self) -> dict[str, Any]:
        """The object as sent: camelCase names, every field."""
        return self.model_dump(by_alias=True, mode="json")


class Reply(Wire):
    model_config = ConfigDict(extra="ignore")


class Ack(Reply):
    """The answer of a command that answers nothing but success: ``{}``."""


R = TypeVar("R", bound=Reply)


class Request(Wire, Generic[R]):
    model_config = ConfigDict(extra="forbid")

    PATH: ClassVar[str] = ""
    """The command's path (one of the agent contract's constants)."""
    ASYNC: ClassVar[bool] = False
    """Whether the command runs as a task that answers by callback (contracts.envelope)."""
    REPLY: ClassVar[type[Reply]] = Ack
    """The reply's type: the class's type parameter, found when the class is made."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        for base in cls.__mro__:
            meta = getattr(base, "__pydantic_generic_metadata__", None)
            if meta and meta.get("origin") is Request and meta.get("args"):
                cls.REPLY = meta["args"][0]
                break

    def reply(self, answer: dict[str, Any]) -> R:
        """The agent's answer to this request, validated (pydantic's ValidationError names
        the field that is wrong)."""
        return self.REPLY.model_validate(answer)  # type: ignore[return-value]


class Report(Wire):
    """What an agent posts to the core on its own (``<reportUrl><PATH>``)."""

    model_config = ConfigDict(extra="ignore")

    PATH: ClassVar[str] = ""
