"""Global configs: definitions, validated updates, events, extensions, reconciliation at start."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
from sqlalchemy import select

from core.config.definitions import (
    GlobalConfigBeforeUpdateExtensionPoint,
    GlobalConfigDef,
    GlobalConfigProvider,
    GlobalConfigUpdateExtensionPoint,
    parse_size,
)
from core.config.models import GlobalConfigVO
from core.config.plugin import UPDATE_EVENT, GlobalConfigPlugin
from core.kernel.db import Database
from core.kernel.errors import OperationError, SysErrors, operr
from core.kernel.events import CanonicalEvent
from core.kernel.extensions import Plugin, PluginError
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from tests.conftest import fails, make_node, ok

REQUIRED = {
    ("kvm", "reservedMemory"): ("512M", "Size"),
    ("kvm", "vm.migrationQuantity"): ("2", "Integer"),
    ("host", "cpu.overProvisioning.ratio"): ("10", "Integer"),
    ("host", "ping.interval"): ("60", "Integer"),
    ("vm", "deletionPolicy"): ("Delay", "String"),
    ("vm", "expungePeriod"): ("604800", "Integer"),
}
MQ = {"category": "kvm", "name": "vm.migrationQuantity"}


def configs(node: ManagementNode) -> GlobalConfigPlugin:
    return node.plugin(GlobalConfigPlugin)


def stored(props: Properties, category: str, name: str) -> GlobalConfigVO | None:
    """The row as the database has it, read without any node."""
    db = Database(props.db_url)
    try:
        return db.run_sync(
            lambda s: s.scalars(
                select(GlobalConfigVO).where(
                    GlobalConfigVO.category == category, GlobalConfigVO.name == name
                )
            ).first()
        )
    finally:
        db.close()


async def stored_value(node: ManagementNode, category: str, name: str) -> str:
    assert node.db is not None
    return await node.db.run(
        lambda s: s.scalars(
            select(GlobalConfigVO.value).where(
                GlobalConfigVO.category == category, GlobalConfigVO.name == name
            )
        ).one()
    )


# -- the definitions ------------------------------------------------------------------


async def test_required_configs_exist_with_their_defaults(node: ManagementNode) -> None:
    plugin = configs(node)
    for (category, name), (default, type_) in REQUIRED.items():
        definition = plugin.definition(category, name)
        assert definition.default == default
        assert definition.type == type_
        rows = await ok(
            node, "QueryGlobalConfig", conditions=[f"category={category}", f"name={name}"]
        )
        assert len(rows) == 1
        assert rows[0]["value"] == default and rows[0]["defaultValue"] == default
        assert rows[0]["description"]
    assert plugin.value("kvm", "reservedMemory") == 512 * 1024**2
    assert plugin.value("kvm", "vm.migrationQuantity") == 2
    assert plugin.value("host", "cpu.overProvisioning.ratio") == 10
    assert plugin.value("vm", "deletionPolicy") == "Delay"
    assert plugin.definition("vm", "deletionPolicy").valid_values == ("Direct", "Delay", "Never")
    assert isinstance(plugin.value("vm", "expungePeriod"), int)


async def test_definitions_are_sorted(node: ManagementNode) -> None:
    keys = [(d.category, d.name) for d in configs(node).definitions()]
    assert keys == sorted(keys)
    assert set(REQUIRED) <= set(keys)


async def test_unknown_config(node: ManagementNode) -> None:
    with pytest.raises(
        OperationError,
        match=r"unable to find GlobalConfig\[category: kvm, "
        r"name: nope\]",
    ):
        configs(node).value("kvm", "nope")
    desc = await fails(
        node,
        "UpdateGlobalConfig",
        SysErrors.INVALID_ARGUMENT,
        category="kvm",
        name="nope",
        value="1",
    )
    assert "unable to find GlobalConfig[category: kvm, name: nope]" in desc


# -- updates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("0", "breaks the rule: number in range [1, 2147483647]"),
        ("-3", "breaks the rule: number in range [1, 2147483647]"),
        ("2147483648", "breaks the rule: number in range [1, 2147483647]"),
        ("abc", "is not an integer"),
        ("1.5", "is not an integer"),
        ("", "is not an integer"),
    ],
)
async def test_invalid_update_is_refused_and_changes_nothing(
    node: ManagementNode, value: str, rule: str
) -> None:
    events: list[CanonicalEvent] = []
    node.events.subscribe(UPDATE_EVENT, events.append)
    desc = await fails(node, "UpdateGlobalConfig", SysErrors.INVALID_ARGUMENT, **MQ, value=value)
    assert desc == f"value {value!r} of global config kvm.vm.migrationQuantity {rule}"
    assert configs(node).value("kvm", "vm.migrationQuantity") == 2
    assert await stored_value(node, "kvm", "vm.migrationQuantity") == "2"
    assert events == []


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        ("reservedMemory", "lots", "is not a size like 512M or 2G"),
        ("reservedMemory", "12X", "is not a size"),
    ],
)
async def test_invalid_size(node: ManagementNode, name: str, value: str, rule: str) -> None:
    desc = await fails(
        node,
        "UpdateGlobalConfig",
        SysErrors.INVALID_ARGUMENT,
        category="kvm",
        name=name,
        value=value,
    )
    assert rule in desc
    assert configs(node).value("kvm", "reservedMemory") == 512 * 1024**2


async def test_invalid_valid_values(node: ManagementNode) -> None:
    desc = await fails(
        node,
        "UpdateGlobalConfig",
        SysErrors.INVALID_ARGUMENT,
        category="vm",
        name="deletionPolicy",
        value="Later",
    )
    assert desc == (
        "value 'Later' of global config vm.deletionPolicy breaks the rule: "
        "valid values are [Direct, Delay, Never]"
    )
    assert configs(node).value("vm", "deletionPolicy") == "Delay"


@pytest.mark.parametrize("value", ["1", "2147483647", "3"])
async def test_valid_update_edges(node: ManagementNode, value: str) -> None:
    inv = await ok(node, "UpdateGlobalConfig", **MQ, value=value)
    assert inv["value"] == value and inv["defaultValue"] == "2"
    assert configs(node).value("kvm", "vm.migrationQuantity") == int(value)
    assert await stored_value(node, "kvm", "vm.migrationQuantity") == value


async def test_valid_update_persists_across_a_restart(props: Properties) -> None:
    async with ManagementNode(props) as node:
        await ok(node, "UpdateGlobalConfig", **MQ, value="3")
        await ok(node, "UpdateGlobalConfig", category="kvm", name="reservedMemory", value="1G")
        await ok(node, "UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Never")
    row = stored(props, "kvm", "vm.migrationQuantity")
    assert row is not None and row.value == "3" and row.default_value == "2"
    async with ManagementNode(props) as again:
        plugin = configs(again)
        assert plugin.value("kvm", "vm.migrationQuantity") == 3
        assert plugin.value("kvm", "reservedMemory") == 1024**3
        assert plugin.value("vm", "deletionPolicy") == "Never"
        rows = await ok(
            again, "QueryGlobalConfig", conditions=["category=kvm", "name=vm.migrationQuantity"]
        )
        assert rows[0]["value"] == "3"


async def test_update_event_carries_old_and_new_values(node: ManagementNode) -> None:
    events: list[CanonicalEvent] = []
    only_vm: list[CanonicalEvent] = []
    node.events.subscribe(UPDATE_EVENT, events.append)
    node.events.subscribe("/globalConfig/update/vm/{name}", only_vm.append)
    await ok(node, "UpdateGlobalConfig", **MQ, value="5")
    await ok(node, "UpdateGlobalConfig", **MQ, value="5")  # no change: no event
    await ok(node, "UpdateGlobalConfig", **MQ, value="6")
    assert [e.path for e in events] == ["/globalConfig/update/kvm/vm.migrationQuantity"] * 2
    assert events[0].tokens == {"category": "kvm", "name": "vm.migrationQuantity"}
    assert events[0].data == {
        "category": "kvm",
        "name": "vm.migrationQuantity",
        "oldValue": "2",
        "newValue": "5",
    }
    assert events[1].data == {
        "category": "kvm",
        "name": "vm.migrationQuantity",
        "oldValue": "5",
        "newValue": "6",
    }
    assert only_vm == []


class Hooks:
    before: ClassVar[list[tuple[str, str, str]]] = []
    after: ClassVar[list[tuple[str, str, str]]] = []
    veto: ClassVar[set[str]] = set()
    crash_after: ClassVar[bool] = False


class VetoPlugin(Plugin, GlobalConfigBeforeUpdateExtensionPoint):
    implements = (GlobalConfigBeforeUpdateExtensionPoint,)

    async def before_update_global_config(
        self, definition: GlobalConfigDef, old_value: str, new_value: str
    ) -> None:
        Hooks.before.append((definition.identity, old_value, new_value))
        if new_value in Hooks.veto:
            raise operr(f"{new_value} is not allowed while VMs migrate")


class AfterPlugin(Plugin, GlobalConfigUpdateExtensionPoint):
    implements = (GlobalConfigUpdateExtensionPoint,)

    async def after_update_global_config(
        self, definition: GlobalConfigDef, old_value: str, new_value: str
    ) -> None:
        Hooks.after.append((definition.identity, old_value, new_value))
        if Hooks.crash_after:
            raise RuntimeError("after-update hook crashed")


@pytest.fixture
def hooks() -> type[Hooks]:
    Hooks.before, Hooks.after, Hooks.veto, Hooks.crash_after = [], [], set(), False
    return Hooks


@pytest.fixture
async def hooked(props: Properties, hooks: type[Hooks]) -> Any:
    node = make_node(props, {"veto": VetoPlugin, "after": AfterPlugin})
    async with node:
        yield node


async def test_before_update_extension_can_veto(hooked: ManagementNode, hooks: type[Hooks]) -> None:
    events: list[CanonicalEvent] = []
    hooked.events.subscribe(UPDATE_EVENT, events.append)
    hooks.veto = {"7"}
    desc = await fails(hooked, "UpdateGlobalConfig", SysErrors.OPERATION_ERROR, **MQ, value="7")
    assert desc == "7 is not allowed while VMs migrate"
    assert hooks.before == [("kvm.vm.migrationQuantity", "2", "7")]
    assert hooks.after == []
    assert events == []
    assert configs(hooked).value("kvm", "vm.migrationQuantity") == 2
    assert await stored_value(hooked, "kvm", "vm.migrationQuantity") == "2"

    await ok(hooked, "UpdateGlobalConfig", **MQ, value="4")
    assert hooks.before[-1] == ("kvm.vm.migrationQuantity", "2", "4")
    assert hooks.after == [("kvm.vm.migrationQuantity", "2", "4")]


async def test_invalid_value_never_reaches_the_extensions(
    hooked: ManagementNode, hooks: type[Hooks]
) -> None:
    await fails(hooked, "UpdateGlobalConfig", SysErrors.INVALID_ARGUMENT, **MQ, value="0")
    assert hooks.before == [] and hooks.after == []


async def test_unchanged_value_calls_no_extension(
    hooked: ManagementNode, hooks: type[Hooks]
) -> None:
    await ok(hooked, "UpdateGlobalConfig", **MQ, value="2")
    assert hooks.before == [] and hooks.after == []


async def test_after_update_exception_does_not_undo(
    hooked: ManagementNode, hooks: type[Hooks]
) -> None:
    events: list[CanonicalEvent] = []
    hooked.events.subscribe(UPDATE_EVENT, events.append)
    hooks.crash_after = True
    inv = await ok(hooked, "UpdateGlobalConfig", **MQ, value="9")
    assert inv["value"] == "9"
    assert hooks.after == [("kvm.vm.migrationQuantity", "2", "9")]
    assert configs(hooked).value("kvm", "vm.migrationQuantity") == 9
    assert await stored_value(hooked, "kvm", "vm.migrationQuantity") == "9"
    assert [e.data["newValue"] for e in events] == ["9"]


# -- reset and options ------------------------------------------------------------------


async def test_reset_one_category_or_all(node: ManagementNode) -> None:
    await ok(node, "UpdateGlobalConfig", **MQ, value="5")
    await ok(node, "UpdateGlobalConfig", category="host", name="ping.interval", value="30")
    events: list[CanonicalEvent] = []
    node.events.subscribe(UPDATE_EVENT, events.append)

    changed = await ok(node, "ResetGlobalConfig", category="kvm")
    assert [(c["category"], c["name"], c["value"]) for c in changed] == [
        ("kvm", "vm.migrationQuantity", "2")
    ]
    assert configs(node).value("kvm", "vm.migrationQuantity") == 2
    assert configs(node).value("host", "ping.interval") == 30
    assert [e.data for e in events] == [
        {"category": "kvm", "name": "vm.migrationQuantity", "oldValue": "5", "newValue": "2"}
    ]

    changed = await ok(node, "ResetGlobalConfig")
    assert [(c["category"], c["name"]) for c in changed] == [("host", "ping.interval")]
    assert configs(node).value("host", "ping.interval") == 60
    assert await stored_value(node, "host", "ping.interval") == "60"
    assert await ok(node, "ResetGlobalConfig") == []


async def test_get_options(node: ManagementNode) -> None:
    opts = await ok(node, "GetGlobalConfigOptions", **MQ)
    assert opts["type"] == "Integer"
    assert opts["defaultValue"] == "2"
    assert opts["numberGreaterThanOrEqual"] == 1
    assert opts["numberLessThanOrEqual"] == 2**31 - 1
    assert opts["rules"] == "Integer, in [1, 2147483647]"
    assert opts["validValues"] == []
    policy = await ok(node, "GetGlobalConfigOptions", category="vm", name="deletionPolicy")
    assert policy["validValues"] == ["Direct", "Delay", "Never"]
    assert policy["numberGreaterThanOrEqual"] is None
    assert policy["rules"] == "String, one of Direct|Delay|Never"
    desc = await fails(
        node, "GetGlobalConfigOptions", SysErrors.INVALID_ARGUMENT, category="vm", name="nope"
    )
    assert "unable to find" in desc


async def test_update_requires_its_parameters(node: ManagementNode) -> None:
    desc = await fails(
        node,
        "UpdateGlobalConfig",
        SysErrors.INVALID_ARGUMENT,
        category="kvm",
        name="vm.migrationQuantity",
    )
    assert desc == "missing required parameter value of UpdateGlobalConfig"


# -- reconciliation at start ------------------------------------------------------------


class ExtraConfigs(Plugin, GlobalConfigProvider):
    implements = (GlobalConfigProvider,)
    defs: ClassVar[list[GlobalConfigDef]] = []

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(self.defs)


def defs(version: int) -> list[GlobalConfigDef]:
    first = version == 1
    out = [
        GlobalConfigDef(
            "test",
            "untouched",
            "still at the default",
            default="1" if first else "2",
            type="Integer",
            number_range=(1, 100),
        ),
        GlobalConfigDef(
            "test",
            "userSet",
            "a user changed it",
            default="1" if first else "2",
            type="Integer",
            number_range=(1, 100),
        ),
        GlobalConfigDef(
            "test",
            "tightened",
            "its rules change",
            default="10",
            type="Integer",
            number_range=(1, 100) if first else (1, 20),
        ),
        GlobalConfigDef(
            "test",
            "corrupted",
            "edited in the DB",
            default="Delay",
            valid_values=("Delay", "Direct"),
        ),
    ]
    if first:
        out.append(GlobalConfigDef("test", "retired", "dropped in version 2", default="x"))
    return out


async def test_reconciliation_at_start(props: Properties) -> None:
    ExtraConfigs.defs = defs(1)
    async with make_node(props, {"testConfigs": ExtraConfigs}) as node:
        await ok(node, "UpdateGlobalConfig", category="test", name="userSet", value="5")
        await ok(node, "UpdateGlobalConfig", category="test", name="tightened", value="50")
        assert configs(node).value("test", "retired") == "x"

    # between two starts: the stored value is corrupted by hand
    db = Database(props.db_url)
    try:

        def corrupt(session: Any) -> None:
            row = session.scalars(
                select(GlobalConfigVO).where(GlobalConfigVO.name == "corrupted")
            ).one()
            row.value = "Sometime"

        db.run_sync(corrupt)
    finally:
        db.close()

    ExtraConfigs.defs = defs(2)
    async with make_node(props, {"testConfigs": ExtraConfigs}) as node:
        plugin = configs(node)
        # a changed default moves a row still at the old default...
        assert plugin.value("test", "untouched") == 2
        # ...but not a value a user chose; its default is updated
        assert plugin.value("test", "userSet") == 5
        # a value the new rules refuse goes back to the default
        assert plugin.value("test", "tightened") == 10
        # an invalid stored value goes back to the default
        assert plugin.value("test", "corrupted") == "Delay"
        # rows without a definition are removed
        with pytest.raises(OperationError):
            plugin.value("test", "retired")
        rows = {
            r["name"]: r for r in await ok(node, "QueryGlobalConfig", conditions=["category=test"])
        }
    assert set(rows) == {"untouched", "userSet", "tightened", "corrupted"}
    assert (rows["untouched"]["value"], rows["untouched"]["defaultValue"]) == ("2", "2")
    assert (rows["userSet"]["value"], rows["userSet"]["defaultValue"]) == ("5", "2")
    assert rows["tightened"]["value"] == "10"
    assert rows["corrupted"]["value"] == "Delay"
    assert stored(props, "test", "retired") is None
    row = stored(props, "test", "untouched")
    assert row is not None and (row.value, row.default_value) == ("2", "2")

    # and the core's configs were left alone throughout
    async with ManagementNode(props) as node:
        assert configs(node).value("kvm", "vm.migrationQuantity") == 2
        assert stored(props, "test", "untouched") is None  # no plugin defines it any more


async def test_description_follows_the_definition(props: Properties) -> None:
    ExtraConfigs.defs = [GlobalConfigDef("test", "d", "old words", default="a")]
    async with make_node(props, {"testConfigs": ExtraConfigs}):
        pass
    ExtraConfigs.defs = [GlobalConfigDef("test", "d", "new words", default="a")]
    async with make_node(props, {"testConfigs": ExtraConfigs}) as node:
        rows = await ok(node, "QueryGlobalConfig", conditions=["category=test"])
    assert rows[0]["description"] == "new words"


async def test_a_config_defined_twice_stops_the_node(props: Properties) -> None:
    ExtraConfigs.defs = [
        GlobalConfigDef("kvm", "reservedMemory", "again", default="1G", type="Size")
    ]
    with pytest.raises(PluginError, match=r"global config kvm\.reservedMemory is defined twice"):
        await make_node(props, {"testConfigs": ExtraConfigs}).start()
    async with ManagementNode(props) as node:  # the failed start released the data dir
        assert node.running


# -- definitions on their own -----------------------------------------------------------


def test_definition_with_a_bad_default_is_a_bug() -> None:
    with pytest.raises(OperationError, match="breaks the rule"):
        GlobalConfigDef("t", "n", "d", default="0", type="Integer", number_range=(1, 2))
    with pytest.raises(ValueError, match="unknown type Number"):
        GlobalConfigDef("t", "n", "d", default="0", type="Number")


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512M", 512 * 1024**2),
        ("512MB", 512 * 1024**2),
        ("2g", 2 * 1024**3),
        ("1024", 1024),
        ("1 K", 1024),
        ("3T", 3 * 1024**4),
        ("10B", 10),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "M", "1.5G", "-1M", "12X", "1 GiB"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


@pytest.mark.parametrize(
    ("type_", "good", "bad"),
    [
        ("Boolean", ["true", "False"], ["yes", "1"]),
        ("Float", ["1.5", "2"], ["x"]),
        ("String", ["anything"], []),
    ],
)
def test_typed_values(type_: str, good: list[str], bad: list[str]) -> None:
    default = good[0]
    d = GlobalConfigDef("t", "n", "d", default=default, type=type_)
    for value in good:
        d.validate(value)
    for value in bad:
        with pytest.raises(OperationError, match="is not"):
            d.validate(value)
    assert GlobalConfigDef("t", "b", "d", default="TRUE", type="Boolean").typed("TRUE") is True


def test_regex_rule() -> None:
    d = GlobalConfigDef("t", "n", "d", default="ab", regex="[a-z]+")
    d.validate("xyz")
    with pytest.raises(OperationError, match=r"breaks the rule: must match \[a-z\]\+"):
        d.validate("x1")
    assert d.rules() == "String, matching [a-z]+"
