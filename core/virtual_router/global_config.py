"""Global configs of virtual routers (ZStack's virtualRouter.xml)."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "virtualRouter"

PING_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "ping.interval",
    "seconds between two pings of every virtual router's agent; a ping that fails or "
    "returns the wrong signature reconnects the router, replaying DNS, DHCP and SNAT",
    default="10",
    type="Integer",
    number_range=(1, 3600),
)

ALL = [PING_INTERVAL]
