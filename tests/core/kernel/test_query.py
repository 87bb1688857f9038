"""Query<Resource> APIs: every condition operator, paging, counting, sorting, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from core.config.plugin import GlobalConfigPlugin
from core.kernel.errors import OperationError, SysErrors
from core.kernel.node import ManagementNode
from core.kernel.query import Condition
from core.zone.models import ZoneVO
from tests.conftest import fails, ok

# name -> description (None: no description)
ZONES = {
    "z1": "first",
    "z2": None,
    "z3": "third_one",
    "z4": "100% sure",
    "z5": None,
    "web_1": "web",
    "webX1": "web",
}


@pytest.fixture
async def zones(node: ManagementNode) -> AsyncIterator[dict[str, dict[str, Any]]]:
    made = {}
    for name, description in ZONES.items():
        params = {"name": name}
        if description is not None:
            params["description"] = description
        made[name] = await ok(node, "CreateZone", **params)
    yield made


async def names(node: ManagementNode, *conditions: str, **params: Any) -> list[str]:
    params.setdefault("sortBy", "name")
    inventories = await ok(node, "QueryZone", conditions=list(conditions), **params)
    return [inv["name"] for inv in inventories]


ALL = sorted(ZONES)


async def test_no_condition_returns_all(node: ManagementNode, zones: Any) -> None:
    assert await names(node) == ALL


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("name=z1", ["z1"]),
        ("name=nope", []),
        ("name!=z1", [n for n in ALL if n != "z1"]),
        ("name>z3", ["z4", "z5"]),
        ("name>=z3", ["z3", "z4", "z5"]),
        ("name<web_1", ["webX1"]),  # binary order: "X" < "_"
        ("name<=web_1", ["webX1", "web_1"]),
        ("name<z2", ["web_1", "webX1", "z1"]),
        ("name?=z1,z3,nope", ["z1", "z3"]),
        ("name?=z2", ["z2"]),
        ("name!?=z1,z3", [n for n in ALL if n not in ("z1", "z3")]),
        ("name~=z%", ["z1", "z2", "z3", "z4", "z5"]),
        ("name~=z_", ["z1", "z2", "z3", "z4", "z5"]),
        ("name~=web_1", ["web_1", "webX1"]),  # '_' is LIKE's any-one-character
        ("name~=%1", ["web_1", "webX1", "z1"]),
        ("name!~=z%", ["web_1", "webX1"]),
        ("description~=%%%", ["web_1", "webX1", "z1", "z3", "z4"]),
        ("description~=1__%", ["z4"]),
        ("description is null", ["z2", "z5"]),
        ("description not null", ["web_1", "webX1", "z1", "z3", "z4"]),
        ("  description   is null  ", ["z2", "z5"]),
        ("description=third_one", ["z3"]),
        ("description=100% sure", ["z4"]),
        ("state=Enabled", ALL),
        ("state!=Enabled", []),
        ("type?=zstack,other", ALL),
    ],
)
async def test_operators(
    node: ManagementNode, zones: Any, condition: str, expected: list[str]
) -> None:
    assert await names(node, condition) == sorted(expected)


async def test_conditions_are_anded(node: ManagementNode, zones: Any) -> None:
    assert await names(node, "name~=z%", "description not null", "name!=z4") == ["z1", "z3"]


async def test_uuid_conditions(node: ManagementNode, zones: dict[str, Any]) -> None:
    z1, z3 = zones["z1"]["uuid"], zones["z3"]["uuid"]
    assert await names(node, f"uuid={z1}") == ["z1"]
    assert await names(node, f"uuid?={z1},{z3}") == ["z1", "z3"]
    assert len(await names(node, f"uuid!?={z1},{z3}")) == len(ALL) - 2


async def test_date_conditions(node: ManagementNode, zones: dict[str, Any]) -> None:
    created = {n: inv["createDate"] for n, inv in zones.items()}
    ordered = sorted(created, key=lambda n: created[n])
    pivot = created[ordered[3]]
    assert await names(node, f"createDate>={pivot}") == sorted(ordered[3:])
    assert await names(node, f"createDate<{pivot}") == sorted(ordered[:3])
    assert await names(node, "createDate>2000-01-01") == ALL
    assert await names(node, "createDate<2000-01-01T00:00:00") == []


async def test_integer_operators_on_global_configs(node: ManagementNode) -> None:
    every = await ok(node, "QueryGlobalConfig")
    ids = sorted(row["id"] for row in every)
    assert len(ids) == len(node.plugin(GlobalConfigPlugin).definitions()) >= 7
    pivot = ids[3]

    async def ids_where(cond: str) -> list[int]:
        return sorted(r["id"] for r in await ok(node, "QueryGlobalConfig", conditions=[cond]))

    assert await ids_where(f"id={pivot}") == [pivot]
    assert await ids_where(f"id!={pivot}") == [i for i in ids if i != pivot]
    assert await ids_where(f"id>{pivot}") == [i for i in ids if i > pivot]
    assert await ids_where(f"id>={pivot}") == [i for i in ids if i >= pivot]
    assert await ids_where(f"id<{pivot}") == [i for i in ids if i < pivot]
    assert await ids_where(f"id<={pivot}") == [i for i in ids if i <= pivot]
    assert await ids_where(f"id?={ids[0]}, {ids[2]}") == [ids[0], ids[2]]
    assert await ids_where(f"id!?={ids[0]},{ids[2]}") == [i for i in ids if i not in ids[::2][:2]]


async def test_camel_case_fields(node: ManagementNode) -> None:
    rows = await ok(node, "QueryGlobalConfig", conditions=["defaultValue=512M"])
    assert [(r["category"], r["name"]) for r in rows] == [("kvm", "reservedMemory")]
    assert set(rows[0]) == {"id", "category", "name", "description", "defaultValue", "value"}
    desc = await fails(
        node, "QueryGlobalConfig", SysErrors.INVALID_ARGUMENT, conditions=["default_value=512M"]
    )
    assert "has no field default_value" in desc and "defaultValue" in desc


async def test_query_by_category_and_name(node: ManagementNode) -> None:
    rows = await ok(
        node, "QueryGlobalConfig", conditions=["category=kvm", "name=vm.migrationQuantity"]
    )
    assert len(rows) == 1
    assert rows[0]["value"] == "2" and rows[0]["defaultValue"] == "2"


async def test_limit_start_and_sorting(node: ManagementNode, zones: Any) -> None:
    assert await names(node, limit=2) == ALL[:2]
    assert await names(node, limit="2", start="2") == ALL[2:4]
    assert await names(node, start=6) == ALL[6:]
    assert await names(node, start=100) == []
    assert await names(node, limit=0) == []
    assert await names(node, sortDirection="desc") == ALL[::-1]
    assert await names(node, sortDirection="desc", limit=3, start=1) == ALL[::-1][1:4]
    assert await names(node, sortDirection="asc") == ALL


async def test_sort_by_a_camel_case_field(node: ManagementNode, zones: dict[str, Any]) -> None:
    created = sorted(zones, key=lambda n: zones[n]["createDate"])
    rows = await ok(node, "QueryZone", sortBy="createDate", sortDirection="desc")
    assert [r["name"] for r in rows] == created[::-1]


async def test_count(node: ManagementNode, zones: Any) -> None:
    reply = await node.call("QueryZone", {"count": "true", "conditions": ["name~=z%"]})
    assert reply.success
    assert reply.total == 5
    assert reply.inventories == []
    reply = await node.call("QueryZone", {"count": True, "limit": 1})
    assert reply.total == len(ALL)  # counts every match, whatever the page


async def test_reply_with_count(node: ManagementNode, zones: Any) -> None:
    reply = await node.call(
        "QueryZone",
        {
            "replyWithCount": "true",
            "limit": 2,
            "sortBy": "name",
            "conditions": ["name~=z%"],
        },
    )
    assert reply.total == 5
    assert [inv["name"] for inv in reply.inventories or []] == ["z1", "z2"]
    plain = await node.call("QueryZone", {"limit": 2})
    assert plain.total is None


async def test_zero_matches_count(node: ManagementNode, zones: Any) -> None:
    reply = await node.call("QueryZone", {"count": True, "conditions": ["name=nope"]})
    assert reply.total == 0


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"conditions": ["bogus=1"]}, ["QueryZone has no field bogus", "createDate", "name"]),
        (
            {"conditions": ["createDate>yesterday"]},
            ["value 'yesterday' of condition on createDate is not a valid datetime"],
        ),
        ({"conditions": ["name"]}, ["query condition 'name' is not of the form"]),
        ({"conditions": ["=z1"]}, ["is not of the form"]),
        ({"conditions": ["name is nul"]}, ["not of the form"]),
        ({"sortBy": "bogus"}, ["QueryZone has no field bogus"]),
        ({"sortBy": "create_date"}, ["has no field create_date"]),
        ({"sortDirection": "up"}, ["sortDirection", "asc, desc"]),
        ({"limit": "-1"}, ["limit", "range"]),
        ({"limit": "ten"}, ["limit", "integer"]),
        ({"start": "-5"}, ["start", "range"]),
        ({"count": "maybe"}, ["count", "boolean"]),
    ],
)
async def test_bad_queries(
    node: ManagementNode, zones: Any, params: dict[str, Any], words: list[str]
) -> None:
    desc = await fails(node, "QueryZone", SysErrors.INVALID_ARGUMENT, **params)
    for word in words:
        assert word in desc


async def test_bad_value_types(node: ManagementNode) -> None:
    desc = await fails(node, "QueryGlobalConfig", SysErrors.INVALID_ARGUMENT, conditions=["id>abc"])
    assert desc == "QueryGlobalConfig: value 'abc' of condition on id is not a valid int"
    desc = await fails(
        node, "QueryGlobalConfig", SysErrors.INVALID_ARGUMENT, conditions=["id?=1,two"]
    )
    assert "value 'two' of condition on id is not a valid int" in desc
    desc = await fails(
        node, "QuerySystemTag", SysErrors.INVALID_ARGUMENT, conditions=["inherent=maybe"]
    )
    assert "not a valid bool" in desc


async def test_bool_conditions(node: ManagementNode) -> None:
    inherent = await ok(node, "QuerySystemTag", conditions=["inherent=true"])
    assert {r["tag"].split("::")[0] for r in inherent} == {"zstack-lite", "python"}
    assert await ok(node, "QuerySystemTag", conditions=["inherent=False"]) == []


def test_condition_parse() -> None:
    assert Condition.parse("a=b=c") == Condition("a", "=", "b=c")
    assert Condition.parse("a!?=x,y") == Condition("a", "!?=", "x,y")
    assert Condition.parse("a?=x") == Condition("a", "?=", "x")
    assert Condition.parse("a!~=%x") == Condition("a", "!~=", "%x")
    assert Condition.parse("a~=x") == Condition("a", "~=", "x")
    assert Condition.parse("a>=1") == Condition("a", ">=", "1")
    assert Condition.parse("a<=1") == Condition("a", "<=", "1")
    assert Condition.parse("a>1") == Condition("a", ">", "1")
    assert Condition.parse("a<1") == Condition("a", "<", "1")
    assert Condition.parse("a!=") == Condition("a", "!=", "")
    assert Condition.parse("a not null") == Condition("a", "not null")
    with pytest.raises(OperationError, match="is not of the form"):
        Condition.parse("1a=b")


def test_inventory_fields_are_camel_case() -> None:
    assert ZoneVO.inventory_fields() == {
        "state": "state",
        "type": "type",
        "uuid": "uuid",
        "name": "name",
        "description": "description",
        "createDate": "create_date",
        "lastOpDate": "last_op_date",
    }
