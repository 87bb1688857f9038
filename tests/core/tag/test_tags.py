"""System and user tags: patterns, validation against definitions, inherent tags, the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import SysErrors, argerr
from core.kernel.extensions import Plugin
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.kvm import system_tags as kvm_tags
from core.management_node.plugin import VERSION_TAG
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.tag.models import SystemTagVO
from core.tag.plugin import TagPlugin
from tests.conftest import fails, make_node, ok
from tests.core.vm.conftest import make_lab

ZONE_LABEL = SystemTagDef("zoneLabel::{label}", "ZoneVO", user_editable=True)
ZONE_PAIR = SystemTagDef("pair::{key}::{value}", "ZoneVO", user_editable=True)
ZONE_FLAG = SystemTagDef("ha", "ZoneVO", user_editable=True)
ODD = SystemTagDef("my_tag::50%::{x}", "ZoneVO", user_editable=True)


def _only_small(_session: Session, _uuid: str, tokens: dict[str, str]) -> None:
    if not tokens["n"].isdigit() or int(tokens["n"]) > 9:
        raise argerr(f"size::{tokens['n']}: the size must be a digit")


ZONE_SIZE = SystemTagDef("size::{n}", "ZoneVO", user_editable=True, check=_only_small)


class ZoneTags(Plugin, SystemTagProvider):
    implements = (SystemTagProvider,)

    def system_tags(self) -> list[SystemTagDef]:
        return [ZONE_LABEL, ZONE_PAIR, ZONE_FLAG, ODD, ZONE_SIZE]


@pytest.fixture
async def tnode(props: Properties) -> AsyncIterator[ManagementNode]:
    """A node with the test tag definitions on zones."""
    async with make_node(props, {"zoneTags": ZoneTags}) as n:
        yield n


@pytest.fixture
async def zone(tnode: ManagementNode) -> dict[str, Any]:
    return await ok(tnode, "CreateZone", name="zone-1")


def tag_plugin(node: ManagementNode) -> TagPlugin:
    return node.plugin(TagPlugin)


async def system_tags_of(node: ManagementNode, uuid: str) -> list[str]:
    rows = await ok(node, "QuerySystemTag", conditions=[f"resourceUuid={uuid}"], sortBy="tag")
    return [r["tag"] for r in rows]


# -- patterns ----------------------------------------------------------------------------


def test_parse_and_match() -> None:
    qemu = kvm_tags.QEMU_IMG_VERSION
    assert qemu.parse("qemu-img::version::8.2.0") == {"version": "8.2.0"}
    assert qemu.matches("qemu-img::version::8.2.0")
    assert qemu.tokens == ["version"]
    assert ZONE_PAIR.parse("pair::k::v") == {"key": "k", "value": "v"}
    assert ZONE_PAIR.tokens == ["key", "value"]


@pytest.mark.parametrize(
    "tag",
    [
        "qemu-img::version",  # too few parts
        "qemu-img::version::8::2",  # too many parts: values never hold '::'
        "qemu-img::version::",  # empty token
        "qemu::version::8.2.0",  # literal part differs
        "QEMU-IMG::version::8.2.0",
        "qemu-img::version:8.2.0",
        "",
    ],
)
def test_non_matching_tags(tag: str) -> None:
    assert kvm_tags.QEMU_IMG_VERSION.parse(tag) is None
    assert not kvm_tags.QEMU_IMG_VERSION.matches(tag)


def test_pattern_without_separator_matches_only_itself() -> None:
    assert ZONE_FLAG.parse("ha") == {}
    assert not ZONE_FLAG.matches("ha::1")
    assert not ZONE_FLAG.matches("h")
    token_only = SystemTagDef("{flag}", "HostVO")
    assert token_only.matches("{flag}")
    assert not token_only.matches("vmx")


def test_instantiate() -> None:
    assert kvm_tags.HVM_CPU_FLAG.instantiate(flag="vmx") == "hvm::vmx"
    assert ZONE_PAIR.instantiate(key="k", value=3) == "pair::k::3"  # type: ignore[arg-type]
    assert ZONE_FLAG.instantiate() == "ha"
    with pytest.raises(ValueError, match="holds '::'"):
        kvm_tags.HVM_CPU_FLAG.instantiate(flag="a::b")
    with pytest.raises(ValueError, match="is empty"):
        kvm_tags.HVM_CPU_FLAG.instantiate(flag="")
    tag = kvm_tags.LIBVIRT_VERSION.instantiate(version="9.0.0")
    assert kvm_tags.LIBVIRT_VERSION.parse(tag) == {"version": "9.0.0"}


def test_sql_like() -> None:
    assert kvm_tags.QEMU_IMG_VERSION.sql_like() == "qemu-img::version::%"
    assert ZONE_PAIR.sql_like() == "pair::%::%"
    assert ZONE_FLAG.sql_like() == "ha"
    assert ODD.sql_like() == "my\\_tag::50\\%::%"
    assert SystemTagDef("a\\b::{x}", "ZoneVO").sql_like() == "a\\\\b::%"


async def test_sql_like_selects_literal_underscore_and_percent(
    tnode: ManagementNode, zone: dict[str, Any]
) -> None:
    tags = [
        "my_tag::50%::1",
        "myXtag::50%::1",
        "my_tag::50X::1",
        "my_tag::500::1",
        "my_tag::50%::2::3",
    ]

    def run(session: Session) -> list[str]:
        for tag in tags:
            session.add(
                SystemTagVO(
                    resource_uuid=zone["uuid"], resource_type="ZoneVO", tag=tag, type="System"
                )
            )
        session.flush()
        stmt = select(SystemTagVO.tag).where(SystemTagVO.tag.like(ODD.sql_like(), escape="\\"))
        return sorted(session.scalars(stmt))

    assert tnode.db is not None
    # LIKE narrows to candidates; '%' may span '::', which parse() then rejects
    assert await tnode.db.run(run) == ["my_tag::50%::1", "my_tag::50%::2::3"]

    def matching(session: Session) -> list[str]:
        return [r.tag for r in tag_plugin(tnode).system_tags(session, zone["uuid"], ODD)]

    assert await tnode.db.run(matching) == ["my_tag::50%::1"]


# -- definitions ---------------------------------------------------------------------------


async def test_kvm_host_tag_definitions_exist(node: ManagementNode) -> None:
    patterns = {d.pattern for d in tag_plugin(node).definitions("HostVO")}
    assert {
        "qemu-img::version::{version}",
        "libvirt::version::{version}",
        "hvm::{flag}",
    } <= patterns
    assert tag_plugin(node).matching_definition("hvm::svm", "HostVO") == kvm_tags.HVM_CPU_FLAG
    with pytest.raises(Exception, match="no system tag matches hvm::svm for resource type ZoneVO"):
        tag_plugin(node).matching_definition("hvm::svm", "ZoneVO")


async def test_definitions_by_type(tnode: ManagementNode) -> None:
    plugin = tag_plugin(tnode)
    assert plugin.definitions("ZoneVO") == [ZONE_LABEL, ZONE_PAIR, ZONE_FLAG, ODD, ZONE_SIZE]
    assert plugin.definitions("NoSuchVO") == []
    assert VERSION_TAG in plugin.definitions()


# -- CreateSystemTag / CreateUserTag ---------------------------------------------------------


async def test_create_system_tag_with_undefined_tag(node: ManagementNode) -> None:
    z = await ok(node, "CreateZone", name="z")
    desc = await fails(
        node,
        "CreateSystemTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="ZoneVO",
        resourceUuid=z["uuid"],
        tag="zoneLabel::x",
    )
    assert desc == "no system tag matches zoneLabel::x for resource type ZoneVO"
    assert await system_tags_of(node, z["uuid"]) == []


async def test_create_system_tag_with_defined_tag(
    tnode: ManagementNode, zone: dict[str, Any]
) -> None:
    inv = await ok(
        tnode,
        "CreateSystemTag",
        resourceType="ZoneVO",
        resourceUuid=zone["uuid"],
        tag="zoneLabel::gold",
    )
    assert inv["tag"] == "zoneLabel::gold"
    assert inv["resourceUuid"] == zone["uuid"] and inv["resourceType"] == "ZoneVO"
    assert inv["type"] == "System" and inv["inherent"] is False
    again = await ok(
        tnode,
        "CreateSystemTag",
        resourceType="ZoneVO",
        resourceUuid=zone["uuid"],
        tag="zoneLabel::gold",
    )
    assert again["uuid"] == inv["uuid"]  # the same tag twice is one tag
    await ok(
        tnode,
        "CreateSystemTag",
        resourceType="ZoneVO",
        resourceUuid=zone["uuid"],
        tag="zoneLabel::silver",
    )
    assert await system_tags_of(tnode, zone["uuid"]) == ["zoneLabel::gold", "zoneLabel::silver"]
    with tnode.db.session() as s:  # type: ignore[union-attr]
        tokens = tag_plugin(tnode).tokens(s, zone["uuid"], ZONE_LABEL)
    assert sorted(t["label"] for t in tokens) == ["gold", "silver"]


async def test_definition_is_per_resource_type(tnode: ManagementNode, zone: dict[str, Any]) -> None:
    mn = (await ok(tnode, "QueryManagementNode"))[0]
    desc = await fails(
        tnode,
        "CreateSystemTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="ManagementNodeVO",
        resourceUuid=mn["uuid"],
        tag="zoneLabel::x",
    )
    assert "for resource type ManagementNodeVO" in desc


async def test_create_tag_on_missing_or_unknown_resource(tnode: ManagementNode) -> None:
    desc = await fails(
        tnode,
        "CreateSystemTag",
        SysErrors.RESOURCE_NOT_FOUND,
        resourceType="ZoneVO",
        resourceUuid="0" * 32,
        tag="zoneLabel::x",
    )
    assert desc == f"ZoneVO[uuid:{'0' * 32}] is not found"
    desc = await fails(
        tnode,
        "CreateUserTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="NoSuchVO",
        resourceUuid="0" * 32,
        tag="x",
    )
    assert "unknown resource type NoSuchVO" in desc
    desc = await fails(
        tnode,
        "CreateSystemTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="ZoneVO",
        resourceUuid="0" * 32,
        tag="  ",
    )
    assert "parameter tag of CreateSystemTag must not be empty" in desc


async def test_create_user_tag(tnode: ManagementNode, zone: dict[str, Any]) -> None:
    inv = await ok(
        tnode,
        "CreateUserTag",
        resourceType="ZoneVO",
        resourceUuid=zone["uuid"],
        tag="anything goes::{here}",
    )
    assert inv["type"] == "User" and inv["tag"] == "anything goes::{here}"
    assert "inherent" not in inv
    again = await ok(
        tnode,
        "CreateUserTag",
        resourceType="ZoneVO",
        resourceUuid=zone["uuid"],
        tag="anything goes::{here}",
    )
    assert again["uuid"] == inv["uuid"]
    rows = await ok(tnode, "QueryUserTag", conditions=[f"resourceUuid={zone['uuid']}"])
    assert [r["uuid"] for r in rows] == [inv["uuid"]]
    assert await system_tags_of(tnode, zone["uuid"]) == []


# -- DeleteTag --------------------------------------------------------------------------------


async def test_delete_user_and_system_tags(tnode: ManagementNode, zone: dict[str, Any]) -> None:
    user = await ok(
        tnode, "CreateUserTag", resourceType="ZoneVO", resourceUuid=zone["uuid"], tag="mine"
    )
    system = await ok(
        tnode, "CreateSystemTag", resourceType="ZoneVO", resourceUuid=zone["uuid"], tag="ha"
    )
    await ok(tnode, "DeleteTag", uuid=user["uuid"])
    assert await ok(tnode, "QueryUserTag", conditions=[f"uuid={user['uuid']}"]) == []
    await ok(tnode, "DeleteTag", uuid=system["uuid"])
    assert await system_tags_of(tnode, zone["uuid"]) == []
    desc = await fails(tnode, "DeleteTag", SysErrors.RESOURCE_NOT_FOUND, uuid=user["uuid"])
    assert desc == f"Tag[uuid:{user['uuid']}] is not found"


async def test_inherent_tag_cannot_be_deleted(node: ManagementNode) -> None:
    rows = await ok(node, "QuerySystemTag", conditions=["tag~=zstack-lite::version::%"])
    assert len(rows) == 1
    version = rows[0]
    assert version["inherent"] is True and version["resourceType"] == "ManagementNodeVO"
    desc = await fails(node, "DeleteTag", SysErrors.OPERATION_ERROR, uuid=version["uuid"])
    assert desc == f"tag[uuid:{version['uuid']}] is an inherent system tag, can not be removed"
    reply = await node.call("DeleteTag", {"uuid": version["uuid"]})
    assert reply.error is not None and version["tag"] in reply.error.details
    still = await ok(node, "QuerySystemTag", conditions=[f"uuid={version['uuid']}"])
    assert still == [version]


async def test_delete_unknown_tag(node: ManagementNode) -> None:
    await fails(node, "DeleteTag", SysErrors.RESOURCE_NOT_FOUND, uuid="f" * 32)


# -- systemTags carried by any API message ----------------------------------------------------


async def test_create_zone_with_undefined_system_tag_is_refused(tnode: ManagementNode) -> None:
    desc = await fails(
        tnode,
        "CreateZone",
        SysErrors.INVALID_ARGUMENT,
        name="z",
        systemTags=["zoneLabel::a", "nope::1"],
    )
    assert desc == "no system tag matches nope::1 for resource type ZoneVO"
    assert await ok(tnode, "QueryZone") == []
    assert await ok(tnode, "QuerySystemTag", conditions=["resourceType=ZoneVO"]) == []
    # a tag defined for another resource type is refused too
    desc = await fails(
        tnode, "CreateZone", SysErrors.INVALID_ARGUMENT, name="z", systemTags="hvm::vmx"
    )
    assert "no system tag matches hvm::vmx for resource type ZoneVO" in desc


async def test_create_zone_with_tags(tnode: ManagementNode) -> None:
    z = await ok(
        tnode,
        "CreateZone",
        name="z",
        systemTags="zoneLabel::a,pair::k::v,zoneLabel::a",
        userTags="u1,u2",
    )
    assert await system_tags_of(tnode, z["uuid"]) == ["pair::k::v", "zoneLabel::a"]
    users = await ok(tnode, "QueryUserTag", conditions=[f"resourceUuid={z['uuid']}"], sortBy="tag")
    assert [u["tag"] for u in users] == ["u1", "u2"]
    await ok(tnode, "DeleteZone", uuid=z["uuid"])
    assert await system_tags_of(tnode, z["uuid"]) == []
    assert await ok(tnode, "QueryUserTag", conditions=[f"resourceUuid={z['uuid']}"]) == []


async def test_system_tags_on_a_message_without_a_resource_type(tnode: ManagementNode) -> None:
    desc = await fails(
        tnode,
        "UpdateGlobalConfig",
        SysErrors.INVALID_ARGUMENT,
        category="kvm",
        name="vm.migrationQuantity",
        value="3",
        systemTags=["bogus"],
    )
    assert desc == "no system tag matches bogus"
    rows = await ok(tnode, "QueryGlobalConfig", conditions=["name=vm.migrationQuantity"])
    assert rows[0]["value"] == "2"
    # a user-editable tag passes when the message names no resource type
    await ok(
        tnode,
        "UpdateGlobalConfig",
        category="kvm",
        name="vm.migrationQuantity",
        value="3",
        systemTags=["zoneLabel::x"],
    )
    # a tag its service writes does not
    desc = await fails(
        tnode,
        "UpdateGlobalConfig",
        SysErrors.INVALID_ARGUMENT,
        category="kvm",
        name="vm.migrationQuantity",
        value="4",
        systemTags=["hvm::vmx"],
    )
    assert desc == "system tag hvm::vmx cannot be given to UpdateGlobalConfig: the system writes it"


# -- recreate ----------------------------------------------------------------------------------


async def test_recreate_keeps_an_identical_tag_and_replaces_a_different_value(
    tnode: ManagementNode, zone: dict[str, Any]
) -> None:
    tags = tag_plugin(tnode)
    uuid = zone["uuid"]
    assert tnode.db is not None

    def create(tag: str, *, recreate: bool = True) -> Any:
        return lambda s: tags.create_system_tag(s, "ZoneVO", uuid, tag, recreate=recreate).uuid

    first = await tnode.db.run(create("zoneLabel::a"))
    await tnode.db.run(create("pair::k::v"))  # another pattern: untouched by recreate
    same = await tnode.db.run(create("zoneLabel::a"))
    assert same == first
    other = await tnode.db.run(create("zoneLabel::b"))
    assert other != first
    assert await system_tags_of(tnode, uuid) == ["pair::k::v", "zoneLabel::b"]
    # without recreate, values add up
    await tnode.db.run(create("zoneLabel::c", recreate=False))
    assert await system_tags_of(tnode, uuid) == ["pair::k::v", "zoneLabel::b", "zoneLabel::c"]

    def wipe(session: Session) -> int:
        return tags.delete_system_tags(session, uuid, ZONE_LABEL)

    assert await tnode.db.run(wipe) == 2
    assert await system_tags_of(tnode, uuid) == ["pair::k::v"]


async def test_management_node_version_tags_survive_restarts_unchanged(
    props: Properties,
) -> None:
    async with ManagementNode(props) as node:
        first = await ok(node, "QuerySystemTag", conditions=["inherent=true"], sortBy="tag")
    async with ManagementNode(props) as node:
        second = await ok(node, "QuerySystemTag", conditions=["inherent=true"], sortBy="tag")
        mns = await ok(node, "QueryManagementNode")
    assert [t["uuid"] for t in second] == [t["uuid"] for t in first]
    assert [t["tag"].split("::")[0] for t in second] == ["python", "zstack-lite"]
    assert len(mns) == 1 and all(t["resourceUuid"] == mns[0]["uuid"] for t in second)


async def test_recreate_replaces_a_changed_version(node: ManagementNode) -> None:
    tags = tag_plugin(node)
    mn = (await ok(node, "QueryManagementNode"))[0]
    assert node.db is not None

    def bump(session: Session) -> str:
        return tags.create_system_tag(
            session,
            "ManagementNodeVO",
            mn["uuid"],
            VERSION_TAG.instantiate(version="99.0"),
            inherent=True,
            recreate=True,
        ).tag

    assert await node.db.run(bump) == "zstack-lite::version::99.0"
    rows = await ok(node, "QuerySystemTag", conditions=["tag~=zstack-lite::%"])
    assert [r["tag"] for r in rows] == ["zstack-lite::version::99.0"]
    assert rows[0]["inherent"] is True


# -- tags a service owns ----------------------------------------------------------------------


async def test_a_user_editable_tag_runs_its_check(
    tnode: ManagementNode, zone: dict[str, Any]
) -> None:
    uuid = zone["uuid"]
    desc = await fails(
        tnode,
        "CreateSystemTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="ZoneVO",
        resourceUuid=uuid,
        tag="size::12",
    )
    assert desc == "size::12: the size must be a digit"
    await ok(tnode, "CreateSystemTag", resourceType="ZoneVO", resourceUuid=uuid, tag="size::3")
    desc = await fails(
        tnode, "CreateZone", SysErrors.INVALID_ARGUMENT, name="z2", systemTags=["size::x"]
    )
    assert desc == "size::x: the size must be a digit"
    assert [z["name"] for z in await ok(tnode, "QueryZone")] == ["zone-1"]
    assert await system_tags_of(tnode, uuid) == ["size::3"]


async def network(node: ManagementNode, category: str, tags: list[str]) -> dict[str, Any]:
    zone = await ok(node, "CreateZone", name=f"z-{category}")
    l2 = await ok(node, "CreateL2NoVlanNetwork", name="l2", zoneUuid=zone["uuid"])
    return await ok(  # type: ignore[no-any-return]
        node,
        "CreateL3Network",
        name="l3",
        l2NetworkUuid=l2["uuid"],
        category=category,
        systemTags=tags,
    )


async def test_host_nat_cannot_be_added_or_removed_but_through_its_api(
    node: ManagementNode,
) -> None:
    guest = await network(node, "Private", [])
    # CreateL3Network refuses hostNat on this network; CreateSystemTag must not add it
    desc = await fails(
        node,
        "CreateSystemTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="L3NetworkVO",
        resourceUuid=guest["uuid"],
        tag="hostNat",
    )
    assert desc == (
        "system tag hostNat on L3NetworkVO cannot be created by users:"
        " the service that defines it owns it"
    )
    reply = await node.call(
        "CreateSystemTag",
        {"resourceType": "L3NetworkVO", "resourceUuid": guest["uuid"], "tag": "hostNat"},
    )
    assert reply.error is not None
    assert reply.error.details == "it is given with CreateL3Network when the resource is made"
    assert await system_tags_of(node, guest["uuid"]) == []

    public = await network(node, "Public", ["hostNat"])
    [tag] = await ok(node, "QuerySystemTag", conditions=[f"resourceUuid={public['uuid']}"])
    assert tag["tag"] == "hostNat" and tag["inherent"] is False
    desc = await fails(node, "DeleteTag", SysErrors.OPERATION_ERROR, uuid=tag["uuid"])
    assert desc == (
        "system tag hostNat on L3NetworkVO cannot be deleted by users:"
        " the service that defines it owns it"
    )
    assert await system_tags_of(node, public["uuid"]) == ["hostNat"]
    # another API cannot carry it either
    desc = await fails(
        node,
        "AddIpRangeByNetworkCidr",
        SysErrors.INVALID_ARGUMENT,
        l3NetworkUuid=public["uuid"],
        name="r",
        networkCidr="10.97.0.0/24",
        systemTags=["hostNat"],
    )
    assert "no system tag matches hostNat for resource type IpRangeVO" in desc


async def test_facts_the_system_writes_cannot_be_created_by_users(node: ManagementNode) -> None:
    [mn] = await ok(node, "QueryManagementNode")
    desc = await fails(
        node,
        "CreateSystemTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="ManagementNodeVO",
        resourceUuid=mn["uuid"],
        tag="zstack-lite::version::99",
    )
    assert "cannot be created by users" in desc
    versions = await ok(node, "QuerySystemTag", conditions=["tag~=zstack-lite::version::%"])
    assert [v["tag"] for v in versions] != ["zstack-lite::version::99"] and len(versions) == 1


async def test_static_ip_is_taken_only_by_create_vm(node: ManagementNode, tmp_path: Path) -> None:
    lab = await make_lab(node, tmp_path)
    vm = await ok(
        node,
        "CreateVmInstance",
        name="vm",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
        strategy="JustCreate",
    )
    desc = await fails(
        node,
        "CreateSystemTag",
        SysErrors.INVALID_ARGUMENT,
        resourceType="VmInstanceVO",
        resourceUuid=vm["uuid"],
        tag=f"staticIp::{'a' * 32}::10.0.0.300",
    )
    assert desc.startswith("system tag staticIp::")
    assert "cannot be created by users" in desc
    assert await system_tags_of(node, vm["uuid"]) == []
