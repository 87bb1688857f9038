"""Every model of the core, imported so that Base.metadata is complete
(the migrations test compares it with the migrated schema)."""

from core.config.models import GlobalConfigVO
from core.management_node.models import ManagementNodeVO
from core.tag.models import SystemTagVO, UserTagVO
from core.zone.models import ZoneVO

__all__ = ["GlobalConfigVO", "ManagementNodeVO", "SystemTagVO", "UserTagVO", "ZoneVO"]
