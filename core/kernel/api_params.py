"""ApiParameterExtensionPoint: a plugin adds parameters to another service's API.

ZStack keeps what a plugin adds to a resource as system tags (user data is the tag
``userdata::<base64>`` on the VM), so a contributed parameter ends as system tags: the
caller writes ``userData=<base64>`` on ``CreateVmInstance``, and the message the service
sees carries ``systemTags=[…, "userdata::<base64>"]``, checked by the tag service's
interceptor and written with the VM like any tag the caller gave.

:meth:`~core.kernel.api.ApiMessage.from_params` takes the contributed keys out before it
refuses unknown ones, coerces and checks each against its declared rules (the same as a
message's own parameters), then asks the plugin for the tags.  ``GET /v1/apis`` and
``zcli help`` list them with the API's own parameters.

Only parameters given by name (zcli, the socket API, :meth:`ApiBus.call_by_name`) are
contributed; a message built in code carries its tags itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from core.kernel.api import ParamSpec, param


def contributed_param(name: str, kind: type, **rules: Any) -> ParamSpec:
    """The spec of a contributed parameter ``name`` (camelCase) of ``kind`` (str, int,
    float, bool, list or dict), with :func:`~core.kernel.api.param`'s ``rules``."""
    return ParamSpec(attr=name, api_name=name, kind=kind, spec=param(**rules))


class ApiParameterExtensionPoint(ABC):
    """Adds :attr:`api_params` to the API named :attr:`api_name`; what the caller gives
    for them becomes system tags (:meth:`to_system_tags`).

    Class attributes, so that ``zcli help`` can list the parameters without a node."""

    api_name: ClassVar[str]
    """The API the parameters are added to (``CreateVmInstance``)."""
    api_params: ClassVar[dict[str, ParamSpec]]
    """camelCase name -> spec (:func:`contributed_param`); a name the API already has, or
    another plugin adds, stops start-up."""

    @abstractmethod
    def to_system_tags(self, values: dict[str, Any]) -> list[str]:
        """The system tags for ``values`` (the contributed parameters the caller gave, by
        name, coerced and checked); raise an ``argerr`` naming a bad value."""
