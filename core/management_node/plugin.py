"""The management node's own record, with its versions as inherent system tags, and its
live status (``GetManagementNodeStatus``: what ``zstack-lite status`` and the ztui
dashboard show), to which other services add their part through
:class:`NodeStatusExtensionPoint`."""

from __future__ import annotations

import os
import platform
import socket
import time
from abc import ABC, abstractmethod
from importlib.metadata import version
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.db import utcnow
from core.kernel.extensions import Component, Plugin
from core.kernel.service import Service, handles
from core.management_node.api import GetManagementNodeStatus, QueryManagementNode
from core.management_node.models import ManagementNodeVO
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.tag.plugin import TagPlugin

VERSION_TAG = SystemTagDef("zstack-lite::version::{version}", "ManagementNodeVO")
_VERSION = version("zstack-lite")
"""Read once: the installed distribution does not change under a running node."""
PYTHON_VERSION_TAG = SystemTagDef("python::version::{version}", "ManagementNodeVO")


class NodeStatusExtensionPoint(ABC):
    """An extension point: a part of the node's status (e.g. ``hosts``)."""

    @abstractmethod
    async def node_status(self) -> dict[str, Any]:
        """Keys to merge into ``GetManagementNodeStatus``'s answer.  A ``problems`` list
        is appended to the node's: one line each, saying what is wrong and what to do."""


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
                (VERSION_TAG, _VERSION),
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

    @handles(GetManagementNodeStatus)
    async def status(self, _msg: GetManagementNodeStatus) -> dict[str, Any]:
        started = self.node.started_at
        status: dict[str, Any] = {
            "uuid": self.uuid,
            "pid": os.getpid(),
            "version": _VERSION,
            "dataDir": str(self.node.data_dir),
            "socket": str(self.node.socket_path),
            "startedAt": started,
            "uptime": round(time.time() - started, 1) if started else 0.0,
            "problems": [],
        }
        for ext in self.node.registry.extensions(NodeStatusExtensionPoint):
            part = await ext.node_status()
            status["problems"] += part.pop("problems", [])
            status.update(part)
        return status

    async def stop(self) -> None:
        def record(session: Session) -> None:
            row = session.get(ManagementNodeVO, self.uuid)
            if row is not None:
                row.state = "Stopped"
                row.pid = None

        await self.node.db.run(record)
