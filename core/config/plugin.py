"""The global config service: definitions reconciled with the DB, typed reads, updates.

At start every definition from every :class:`GlobalConfigProvider` is
reconciled with the stored rows (ZStack's ``GlobalConfigFacadeImpl``): new
definitions are inserted at their default; a changed default moves rows still
at the old default to the new one and leaves values a user chose alone; a
stored value the definition no longer accepts goes back to the default; rows
without a definition are removed.  Every change fires
``/globalConfig/update/{category}/{name}``.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.events import GlobalConfigUpdated
from core.config.api import (
    GetGlobalConfigOptions,
    QueryGlobalConfig,
    ResetGlobalConfig,
    UpdateGlobalConfig,
)
from core.config.definitions import (
    GlobalConfigBeforeUpdateExtensionPoint,
    GlobalConfigDef,
    GlobalConfigProvider,
    GlobalConfigUpdateExtensionPoint,
)
from core.config.models import GlobalConfigVO
from core.kernel.errors import argerr
from core.kernel.extensions import Component, Plugin, PluginError
from core.kernel.service import Service, handles

log = logging.getLogger(__name__)
UPDATE_EVENT = GlobalConfigUpdated.PATH


class GlobalConfigPlugin(Plugin, Service, Component):
    implements = (Service, Component)
    order = 1000  # started before the services that read configs
    service_id = "globalConfig"
    queries = (QueryGlobalConfig,)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self._defs: dict[tuple[str, str], GlobalConfigDef] = {}
        self._values: dict[tuple[str, str], str] = {}

    # -- reading ----------------------------------------------------------------

    def definition(self, category: str, name: str) -> GlobalConfigDef:
        try:
            return self._defs[(category, name)]
        except KeyError:
            raise argerr(
                f"unable to find GlobalConfig[category: {category}, name: {name}]"
            ) from None

    def definitions(self) -> list[GlobalConfigDef]:
        return sorted(self._defs.values(), key=lambda d: (d.category, d.name))

    def value(self, category: str, name: str) -> Any:
        """The current value, typed (int, float, bool, str, or bytes for sizes)."""
        definition = self.definition(category, name)
        return definition.typed(self._values[(category, name)])

    # -- start: reconcile definitions and rows -----------------------------------

    async def start(self) -> None:
        for provider in self.node.registry.extensions(GlobalConfigProvider):
            for definition in provider.global_configs():
                key = (definition.category, definition.name)
                if key in self._defs:
                    raise PluginError(f"global config {definition.identity} is defined twice")
                self._defs[key] = definition
        self._values = await self.node.db.run(self._reconcile)

    async def stop(self) -> None:
        pass

    def _reconcile(self, session: Session) -> dict[tuple[str, str], str]:
        rows = {(r.category, r.name): r for r in session.scalars(select(GlobalConfigVO))}
        for key, row in rows.items():
            if key not in self._defs:
                log.warning("removing global config %s.%s: no plugin defines it", *key)
                session.delete(row)
        values: dict[tuple[str, str], str] = {}
        for key, d in self._defs.items():
            row = rows.get(key)
            if row is None:
                row = GlobalConfigVO(
                    category=d.category,
                    name=d.name,
                    description=d.description,
                    default_value=d.default,
                    value=d.default,
                )
                session.add(row)
            else:
                if row.default_value != d.default:
                    if row.value == row.default_value:
                        row.value = d.default
                    row.default_value = d.default
                row.description = d.description
                try:
                    d.validate(row.value)
                except Exception:
                    log.warning(
                        "global config %s: stored value %r is no longer valid; "
                        "back to the default %r",
                        d.identity,
                        row.value,
                        d.default,
                    )
                    row.value = d.default
            values[key] = row.value
        return values

    # -- API ----------------------------------------------------------------------

    @handles(UpdateGlobalConfig)
    async def update(self, msg: UpdateGlobalConfig) -> dict[str, Any]:
        definition = self.definition(msg.category, msg.name)
        definition.validate(msg.value)
        return await self._set(definition, msg.value)

    @handles(ResetGlobalConfig)
    async def reset(self, msg: ResetGlobalConfig) -> list[dict[str, Any]]:
        changed = []
        for d in self.definitions():
            if msg.category and d.category != msg.category:
                continue
            if self._values[(d.category, d.name)] != d.default:
                changed.append(await self._set(d, d.default))
        return changed

    @handles(GetGlobalConfigOptions)
    async def options(self, msg: GetGlobalConfigOptions) -> dict[str, Any]:
        d = self.definition(msg.category, msg.name)
        return {
            "category": d.category,
            "name": d.name,
            "description": d.description,
            "type": d.type,
            "defaultValue": d.default,
            "rules": d.rules(),
            "validValues": list(d.valid_values or []),
            "numberGreaterThanOrEqual": d.number_range[0] if d.number_range else None,
            "numberLessThanOrEqual": d.number_range[1] if d.number_range else None,
            "regex": d.regex,
        }

    async def _set(self, definition: GlobalConfigDef, new_value: str) -> dict[str, Any]:
        key = (definition.category, definition.name)
        old_value = self._values[key]
        if old_value != new_value:
            for ext in self.node.registry.extensions(GlobalConfigBeforeUpdateExtensionPoint):
                await ext.before_update_global_config(definition, old_value, new_value)

        def save(session: Session) -> dict[str, Any]:
            row = session.scalars(
                select(GlobalConfigVO).where(
                    GlobalConfigVO.category == definition.category,
                    GlobalConfigVO.name == definition.name,
                )
            ).one()
            row.value = new_value
            session.flush()
            return row.to_inventory()

        inventory = await self.node.db.run(save)
        if old_value == new_value:
            return inventory
        self._values[key] = new_value
        for ext in self.node.registry.extensions(GlobalConfigUpdateExtensionPoint):
            try:
                await ext.after_update_global_config(definition, old_value, new_value)
            except Exception:
                log.exception(
                    "after-update extension %s of %s failed",
                    type(ext).__qualname__,
                    definition.identity,
                )
        event = GlobalConfigUpdated(
            category=definition.category,
            name=definition.name,
            old_value=old_value,
            new_value=new_value,
        )
        self.node.events.publish(event.path(), event.to_json())
        return inventory


__all__ = ["UPDATE_EVENT", "GlobalConfigPlugin", "GlobalConfigUpdated"]
