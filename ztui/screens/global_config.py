"""The global config view: every run-time setting (category, name, value, default,
description) sorted by category and name, kept live from
``/globalConfig/update/{category}/{name}``; edit one value in a dialog that shows
the API's refusal inline; reset one config, or a whole category, to the defaults."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType

from ztui.columns import GLOBAL_CONFIG_COLUMNS
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.edit_config import EditConfigDialog
from ztui.screens.base import ResourceScreen
from ztui.widgets.resource_table import ResourceTable

Row = dict[str, Any]

KEY_FIELD = "key"
"""The row key: ``category.name`` (a config's name alone is not unique)."""
UPDATE_PREFIX = "/globalConfig/update/"


def config_key(category: Any, name: Any) -> str:
    return f"{category}.{name}"


def config_row(inventory: Mapping[str, Any]) -> Row:
    """A GlobalConfig inventory with its row key."""
    return {**inventory, KEY_FIELD: config_key(inventory["category"], inventory["name"])}


def sorted_rows(inventories: Iterable[Mapping[str, Any]]) -> list[Row]:
    return sorted(
        (config_row(i) for i in inventories), key=lambda r: (str(r["category"]), str(r["name"]))
    )


def new_value(data: Mapping[str, Any]) -> Any:
    """The new value of a GlobalConfigUpdated event: ``newValue``, as events reach clients
    (``core.kernel.event_json.to_json``), or ``new_value`` from a publisher of plain dicts."""
    return data["newValue"] if "newValue" in data else data.get("new_value")


class GlobalConfigScreen(ResourceScreen):
    VIEW = "config"
    COLUMNS = GLOBAL_CONFIG_COLUMNS
    MUTATING = frozenset({"edit", "reset", "reset_category"})

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "edit", "Edit", id="ztui.config.edit"),
        Binding("d", "reset", "Default", id="ztui.config.reset"),
        Binding("D", "reset_category", "Category default", id="ztui.config.reset-category"),
    ]

    def compose_body(self) -> ComposeResult:
        for widget in super().compose_body():
            if isinstance(widget, ResourceTable):
                widget.key_field = KEY_FIELD
            yield widget

    def summary(self) -> str:
        shown, total = self.table.row_count, len(self.table.rows_by_key)
        text = f"{total} global configs"
        if self.table.row_filter.active:
            text += f" · {shown} match /{self.table.row_filter.text}"
        return text

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        configs = await self.api_query("QueryGlobalConfig")
        self.table.show(sorted_rows(configs))
        self.status.show_info(self.summary())

    def on_node_event(self, path: str, data: Any) -> None:
        if not path.startswith(UPDATE_PREFIX) or not isinstance(data, Mapping):
            return
        key = config_key(data.get("category"), data.get("name"))
        row = self.table.rows_by_key.get(key)
        if row is None:
            self.reload()  # a config this view has not seen: show them all again
            return
        self.table.upsert({**row, "value": new_value(data)})

    def apply_inventory(self, inventory: Mapping[str, Any]) -> None:
        self.table.upsert(config_row(inventory))

    # -- edit ---------------------------------------------------------------------

    @on(ResourceTable.RowSelected)
    def _row_selected(self) -> None:
        """Enter on a row edits it (the table takes Enter before the screen's bindings)."""
        if self.check_action("edit", ()):
            self.action_edit()
        else:
            self.notify("Read-only: global configs cannot be changed.", severity="warning")

    def action_edit(self) -> None:
        """Edit the value of the config under the cursor (binding ``ztui.config.edit``)."""
        row = self.table.cursor_row_data
        if row is None:
            return

        def edited(inventory: dict[str, Any] | None) -> None:
            if inventory:
                self.apply_inventory(inventory)
                self.status.show_info(f"{row[KEY_FIELD]} = {inventory.get('value')}")

        self.app.push_screen(EditConfigDialog(row), edited)

    # -- reset --------------------------------------------------------------------

    def action_reset(self) -> None:
        """Set the config under the cursor back to its default (binding ``ztui.config.reset``)."""
        row = self.table.cursor_row_data
        if row is None:
            return
        key, default = row[KEY_FIELD], row.get("defaultValue")
        if row.get("value") == default:
            self.status.show_info(f"{key} is already at its default {default}")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.reset_one(row)

        question = f"Reset {key} from {row.get('value')} to its default {default}?"
        self.app.push_screen(ConfirmDialog(question, "Reset"), answered)

    @work(group="reset", exit_on_error=False)
    async def reset_one(self, row: Mapping[str, Any]) -> None:
        params = {"category": row["category"], "name": row["name"], "value": row["defaultValue"]}
        inventory = await self.api_call("UpdateGlobalConfig", params)
        if inventory:
            self.apply_inventory(inventory)
            self.status.show_info(f"{row[KEY_FIELD]} = {inventory.get('value')} (default)")

    def action_reset_category(self) -> None:
        """Set every config of the category under the cursor back to its default
        (ResetGlobalConfig; binding ``ztui.config.reset-category``)."""
        row = self.table.cursor_row_data
        if row is None:
            return
        category = str(row["category"])
        changed = [
            r
            for r in self.table.rows_by_key.values()
            if r["category"] == category and r.get("value") != r.get("defaultValue")
        ]
        if not changed:
            self.status.show_info(f"every {category} config is at its default")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.reset_category(category)

        names = ", ".join(str(r["name"]) for r in changed)
        question = f"Reset every {category} config to its default?\n(changes {names})"
        self.app.push_screen(ConfirmDialog(question, "Reset"), answered)

    @work(group="reset", exit_on_error=False)
    async def reset_category(self, category: str) -> None:
        reply = await self.session.call("ResetGlobalConfig", {"category": category})
        if not reply.success:
            text = f"ResetGlobalConfig: {reply.error}"
            self.status.show_error(text)
            self.notify(text, title="API error", severity="error")
            return
        changed = reply.inventories if reply.inventories is not None else reply.inventory
        for inventory in changed if isinstance(changed, list) else []:
            self.apply_inventory(inventory)
        self.status.show_info(f"{category}: every config back to its default")
