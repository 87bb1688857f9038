"""ApiParameterExtensionPoint: a plugin adds a parameter to another service's API, which
ends as system tags; zcli help and GET /v1/apis list it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.kernel.api import ApiMessage, param
from core.kernel.api_params import ApiParameterExtensionPoint, contributed_param
from core.kernel.errors import OperationError, argerr
from core.kernel.extensions import Plugin, PluginError
from core.kernel.local_api import describe_api, describe_bus
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.tag.definitions import SystemTagDef, SystemTagProvider
from tests.conftest import make_node, ok


class CreateThing(ApiMessage):
    name: str = param(required=True)


class Colour(ApiParameterExtensionPoint):
    api_name = "CreateThing"
    api_params = {
        "colour": contributed_param(
            "colour", str, valid_values=("red", "blue"), description="its colour"
        ),
        "sizes": contributed_param("sizes", list, max_length=2),
    }

    def to_system_tags(self, values: dict[str, Any]) -> list[str]:
        if values.get("colour") == "blue" and values.get("sizes"):
            raise argerr("a blue thing has no sizes")
        tags = [f"colour::{values['colour']}"] if "colour" in values else []
        return tags + [f"size::{s}" for s in values.get("sizes", [])]


def test_a_contributed_parameter_becomes_system_tags_after_the_callers() -> None:
    msg = CreateThing.from_params({"name": "a", "colour": "red", "systemTags": "x::1"}, [Colour()])
    assert msg.system_tags == ["x::1", "colour::red"]
    assert msg.to_params() == {"name": "a", "systemTags": ["x::1", "colour::red"]}
    assert CreateThing.from_params({"name": "a", "colour": None}, [Colour()]).system_tags == []


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ({"colour": "green"}, "parameter colour of CreateThing must be one of [red, blue]"),
        ({"colour": {"x": 1}}, "parameter colour of CreateThing must be a string"),
        ({"sizes": ["abc"]}, "parameter sizes of CreateThing is longer than 2 characters"),
        ({"colour": "blue", "sizes": "s"}, "a blue thing has no sizes"),
    ],
)
def test_a_contributed_parameter_is_checked_by_its_rules(raw: dict[str, Any], error: str) -> None:
    with pytest.raises(OperationError) as raised:
        CreateThing.from_params({"name": "a", **raw}, [Colour()])
    assert raised.value.error.description.startswith(error)


def test_without_the_contribution_the_parameter_is_unknown() -> None:
    with pytest.raises(OperationError, match="unknown parameter colour for CreateThing"):
        CreateThing.from_params({"name": "a", "colour": "red"})


def test_the_description_lists_contributed_parameters() -> None:
    described = describe_api(CreateThing, [Colour])
    assert described["params"]["colour"] == "string, one of red|blue: its colour"
    assert list(described["params"]) == ["name", "colour", "sizes"]


# -- on a node: CreateZone gains a parameter ------------------------------------------------
class ZoneNote(Plugin, ApiParameterExtensionPoint, SystemTagProvider):
    implements = (ApiParameterExtensionPoint, SystemTagProvider)
    api_name = "CreateZone"
    api_params = {"note": contributed_param("note", str, max_length=20, regex=r"[a-z]+")}

    def to_system_tags(self, values: dict[str, Any]) -> list[str]:
        return [f"note::{values['note']}"]

    def system_tags(self) -> list[SystemTagDef]:
        return [SystemTagDef("note::{text}", "ZoneVO", apis=("CreateZone",))]


class Clash(Plugin, ApiParameterExtensionPoint):
    implements = (ApiParameterExtensionPoint,)
    api_name = "CreateZone"
    api_params = {"name": contributed_param("name", str)}

    def to_system_tags(self, values: dict[str, Any]) -> list[str]:
        return []


@pytest.fixture
async def node(props: Properties) -> AsyncIterator[ManagementNode]:
    n = make_node(props, {"zoneNote": ZoneNote})
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def test_a_plugins_parameter_reaches_the_resource_as_a_tag(node: ManagementNode) -> None:
    zone = await ok(node, "CreateZone", name="z", note="hello")
    tags = await ok(node, "QuerySystemTag", conditions=[f"resourceUuid={zone['uuid']}"])
    assert [t["tag"] for t in tags] == ["note::hello"]
    bad = await node.call("CreateZone", {"name": "y", "note": "Hello"})
    assert bad.error is not None and "parameter note of CreateZone must match" in str(bad.error)
    assert await ok(node, "QueryZone", conditions=["name=y"]) == []
    assert node.bus is not None
    [create_zone] = [api for api in describe_bus(node.bus) if api["name"] == "CreateZone"]
    assert create_zone["params"]["note"] == "string, max length 20"


async def test_a_parameter_the_api_has_already_stops_start_up(props: Properties) -> None:
    n = make_node(props, {"clash": Clash})
    with pytest.raises(PluginError, match="Clash adds parameter name to CreateZone"):
        await n.start()
    await n.stop()
