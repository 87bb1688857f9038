"""The management node's own record, with its versions as inherent system tags."""

from __future__ import annotations

import os
import platform
import socket
from importlib.metadata import version

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.db import utcnow
from core.kernel.extensions import Component, Plugin
from core.kernel.service import Service
from core.management_node.api import QueryManagementNode
from core.management_node.models import ManagementNodeVO
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.tag.plugin import TagPlugin

VERSION_TAG = SystemTagDef("zstack-lite::version::{version}", "ManagementNodeVO")
PYTHON_VERSION_TAG = SystemTagDef("python::version::{version}", "ManagementNodeVO")


class ManagementNodePlugin(Plugin, Service, Component, SystemTagProvider):
    implements = (Service, Component, SystemTagProvider)
    order = 800  # after the tag service has loaded the tag definitions
    service_id = "managementNode"
    queries = (QueryManagementNode,)
    uuid: str = ""

    def system_tags(self) -> list[SystemTagDef]:
        return [VERSION_TAG, PYTHON_VERSION_TAG]

    async def start(self) -> None:
        tags = self.node.plugin(TagPlugin)

        def record(session: Session) -> str:
            row = session.scalars(select(ManagementNodeVO)).first()
            if row is None:
                row = ManagementNodeVO(name="management-node", host_name="")
                session.add(row)
            row.host_name = socket.gethostname()
            row.pid = os.getpid()
            row.state = "Running"
            row.started = utcnow()
            session.flush()
            for definition, value in (
                (VERSION_TAG, version("zstack-lite")),
                (PYTHON_VERSION_TAG, platform.python_version()),
            ):
                tags.create_system_tag(
                    session,
                    ManagementNodeVO.resource_type,
                    row.uuid,
                    definition.instantiate(version=value),
                    inherent=True,
                    recreate=True,
                )
            return row.uuid

        self.uuid = await self.node.db.run(record)

    async def stop(self) -> None:
        def record(session: Session) -> None:
            row = session.get(ManagementNodeVO, self.uuid)
            if row is not None:
                row.state = "Stopped"
                row.pid = None

        await self.node.db.run(record)
