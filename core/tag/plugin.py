"""The tag service: system tags (patterned, validated, some inherent) and user tags.

Services use the :class:`TagPlugin` methods (``create_system_tag``,
``tokens``, ``delete_system_tags``) to write facts such as
``libvirt::version::9.0.0`` on a host.  The API (``CreateSystemTag``,
``DeleteTag``…) refuses a system tag that matches no definition for the
resource's type, a tag its definition does not leave to users (see
core.tag.definitions: ``user_editable``), and an inherent tag's deletion.  A global
interceptor checks the ``systemTags`` every API message may carry: each must be
defined, and either taken by that API (``apis``) or user-editable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.api import ApiMessage
from core.kernel.db import resource_model
from core.kernel.errors import ErrorCode, OperationError, SysErrors, argerr, not_found
from core.kernel.extensions import Component, Plugin, PluginError
from core.kernel.service import GlobalApiInterceptor, InterceptorPosition, Service, handles
from core.tag.api import CreateSystemTag, CreateUserTag, DeleteTag, QuerySystemTag, QueryUserTag
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.tag.models import SystemTagVO, UserTagVO

SYSTEM = "System"
USER = "User"


class TagPlugin(Plugin, Service, Component, GlobalApiInterceptor):
    implements = (Service, Component, GlobalApiInterceptor)
    order = 900
    service_id = "tag"
    queries = (QuerySystemTag, QueryUserTag)
    position = InterceptorPosition.END

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self._defs: dict[str, list[SystemTagDef]] = {}

    async def start(self) -> None:
        for provider in self.node.registry.extensions(SystemTagProvider):
            for definition in provider.system_tags():
                bucket = self._defs.setdefault(definition.resource_type, [])
                if definition in bucket:
                    raise PluginError(
                        f"system tag {definition.pattern} on "
                        f"{definition.resource_type} is defined twice"
                    )
                bucket.append(definition)

    async def stop(self) -> None:
        pass

    # -- definitions ------------------------------------------------------------

    def definitions(self, resource_type: str | None = None) -> list[SystemTagDef]:
        if resource_type is not None:
            return list(self._defs.get(resource_type, []))
        return [d for defs in self._defs.values() for d in defs]

    def _user_definition(self, tag: str, resource_type: str, what: str) -> SystemTagDef | None:
        """The definition that lets users ``what`` (create, delete) ``tag`` on
        ``resource_type``; None if no definition claims the tag; raises if one does but
        leaves it to its service."""
        found = [d for d in self.definitions(resource_type) if d.matches(tag)]
        editable = [d for d in found if d.user_editable]
        if editable or not found:
            return editable[0] if editable else None
        apis = sorted({api for d in found for api in d.apis})
        raise OperationError(
            ErrorCode(
                SysErrors.INVALID_ARGUMENT if what == "created" else SysErrors.OPERATION_ERROR,
                f"system tag {tag} on {resource_type} cannot be {what} by users: "
                "the service that defines it owns it",
                f"it is given with {' or '.join(apis)} when the resource is made"
                if apis
                else "the system writes it",
            )
        )

    def matching_definition(self, tag: str, resource_type: str | None) -> SystemTagDef:
        for definition in self.definitions(resource_type):
            if definition.matches(tag):
                return definition
        where = f" for resource type {resource_type}" if resource_type else ""
        raise argerr(f"no system tag matches {tag}{where}")

    # -- the Python API services use ------------------------------------------------

    def create_system_tag(
        self,
        session: Session,
        resource_type: str,
        resource_uuid: str,
        tag: str,
        *,
        inherent: bool = False,
        recreate: bool = False,
    ) -> SystemTagVO:
        """Attach ``tag``; ``recreate`` first removes tags of the same pattern
        (a host's new libvirt version replaces the old one)."""
        definition = self.matching_definition(tag, resource_type)
        if recreate:  # an identical tag is kept, as ZStack's quickRecreate does
            for row in self.system_tags(session, resource_uuid, definition):
                if row.tag != tag:
                    session.delete(row)
        existing = session.scalars(
            select(SystemTagVO).where(
                SystemTagVO.resource_uuid == resource_uuid, SystemTagVO.tag_is(tag)
            )
        ).first()
        if existing is not None:
            existing.inherent = existing.inherent or inherent
            return existing
        row = SystemTagVO(
            resource_uuid=resource_uuid,
            resource_type=resource_type,
            tag=tag,
            type=SYSTEM,
            inherent=inherent,
        )
        session.add(row)
        session.flush()
        return row

    def system_tags(
        self, session: Session, resource_uuid: str, definition: SystemTagDef | None = None
    ) -> list[SystemTagVO]:
        stmt = select(SystemTagVO).where(SystemTagVO.resource_uuid == resource_uuid)
        if definition is not None:
            stmt = stmt.where(SystemTagVO.tag.like(definition.sql_like(), escape="\\"))
        rows = session.scalars(stmt.order_by(SystemTagVO.create_date.desc())).all()
        if definition is None:
            return list(rows)
        return [row for row in rows if definition.matches(row.tag)]

    def tokens(
        self, session: Session, resource_uuid: str, definition: SystemTagDef
    ) -> list[dict[str, str]]:
        """The token values of every tag of ``definition`` on the resource."""
        return [
            definition.parse(row.tag) or {}
            for row in self.system_tags(session, resource_uuid, definition)
        ]

    def delete_system_tags(
        self, session: Session, resource_uuid: str, definition: SystemTagDef | None = None
    ) -> int:
        """Delete a resource's system tags (inherent ones too: the system may)."""
        rows = self.system_tags(session, resource_uuid, definition)
        for row in rows:
            session.delete(row)
        return len(rows)

    def create_tags_from_message(
        self, session: Session, msg: ApiMessage, resource_type: str, resource_uuid: str
    ) -> None:
        """After a Create message made its resource, attach the tags it carried."""
        for tag in msg.system_tags:
            for definition in self.definitions(resource_type):
                if definition.user_editable and definition.check and definition.matches(tag):
                    definition.check(session, resource_uuid, definition.parse(tag) or {})
            self.create_system_tag(session, resource_type, resource_uuid, tag)
        for tag in msg.user_tags:
            _add_user_tag(session, resource_type, resource_uuid, tag)

    # -- the global interceptor: systemTags on any message --------------------------

    async def intercept(self, msg: ApiMessage) -> ApiMessage:
        rtype = getattr(msg, "tag_resource_type", None)
        for tag in dict.fromkeys(msg.system_tags):
            self.matching_definition(tag, rtype)  # defined at all
            found = [d for d in self.definitions(rtype) if d.matches(tag)]
            if not any(d.user_editable or msg.api_name in d.apis for d in found):
                apis = sorted({api for d in found for api in d.apis})
                raise argerr(
                    f"system tag {tag} cannot be given to {msg.api_name}: "
                    + (f"only {' or '.join(apis)} takes it" if apis else "the system writes it")
                )
        msg.system_tags = list(dict.fromkeys(msg.system_tags))
        msg.user_tags = list(dict.fromkeys(msg.user_tags))
        return msg

    def applies_to(self, msg: ApiMessage) -> bool:
        return bool(msg.system_tags or msg.user_tags)

    # -- API ----------------------------------------------------------------------

    @handles(CreateSystemTag)
    async def api_create_system_tag(self, msg: CreateSystemTag) -> dict[str, Any]:
        def create(session: Session) -> dict[str, Any]:
            _check_resource(session, msg.resource_type, msg.resource_uuid)
            self.matching_definition(msg.tag, msg.resource_type)  # defined at all
            definition = self._user_definition(msg.tag, msg.resource_type, "created")
            assert definition is not None
            if definition.check is not None:
                definition.check(session, msg.resource_uuid, definition.parse(msg.tag) or {})
            return self.create_system_tag(
                session, msg.resource_type, msg.resource_uuid, msg.tag
            ).to_inventory()

        return await self.node.db.run(create)

    @handles(CreateUserTag)
    async def api_create_user_tag(self, msg: CreateUserTag) -> dict[str, Any]:
        def create(session: Session) -> dict[str, Any]:
            _check_resource(session, msg.resource_type, msg.resource_uuid)
            return _add_user_tag(
                session, msg.resource_type, msg.resource_uuid, msg.tag
            ).to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteTag)
    async def api_delete_tag(self, msg: DeleteTag) -> None:
        def delete(session: Session) -> None:
            row: SystemTagVO | UserTagVO | None = session.get(SystemTagVO, msg.uuid)
            if isinstance(row, SystemTagVO) and row.inherent:
                raise OperationError(
                    ErrorCode(
                        SysErrors.OPERATION_ERROR,
                        f"tag[uuid:{msg.uuid}] is an inherent system tag, can not be removed",
                        f"{row.tag} on {row.resource_type}[uuid:{row.resource_uuid}] is written "
                        "by the system",
                    )
                )
            if isinstance(row, SystemTagVO):
                self._user_definition(row.tag, row.resource_type, "deleted")
            if row is None:
                row = session.get(UserTagVO, msg.uuid)
            if row is None:
                raise not_found("Tag", msg.uuid)
            session.delete(row)

        await self.node.db.run(delete)


def _check_resource(session: Session, resource_type: str, resource_uuid: str) -> None:
    try:
        model = resource_model(resource_type)
    except KeyError as exc:
        raise argerr(str(exc.args[0])) from None
    if session.get(model, resource_uuid) is None:
        raise not_found(resource_type, resource_uuid)


def _add_user_tag(session: Session, resource_type: str, resource_uuid: str, tag: str) -> UserTagVO:
    existing = session.scalars(
        select(UserTagVO).where(UserTagVO.resource_uuid == resource_uuid, UserTagVO.tag == tag)
    ).first()
    if existing is not None:
        return existing
    row = UserTagVO(resource_uuid=resource_uuid, resource_type=resource_type, tag=tag, type=USER)
    session.add(row)
    session.flush()
    return row


def delete_all_tags(session: Session, resource_uuids: Sequence[str]) -> None:
    """Remove every tag of resources being deleted."""
    for model in (SystemTagVO, UserTagVO):
        for row in session.scalars(select(model).where(model.resource_uuid.in_(resource_uuids))):
            session.delete(row)
