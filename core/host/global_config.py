"""Global configs of hosts (ZStack's conf/globalConfig/host.xml)."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "host"

CPU_OVER_PROVISIONING_RATIO = GlobalConfigDef(
    CATEGORY,
    "cpu.overProvisioning.ratio",
    "how many virtual CPUs may be allocated per physical CPU thread; a change applies to "
    "every host's capacity at once",
    default="10",
    type="Integer",
    number_range=(1, 1000),
)
PING_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "ping.interval",
    "seconds between two pings of every host's agent",
    default="60",
    type="Integer",
    number_range=(1, 86400),
)

PING_MAX_FAILURE = GlobalConfigDef(
    CATEGORY,
    "ping.maxFailure",
    "failed pings in a row after which a host is marked Disconnected",
    default="3",
    type="Integer",
    number_range=(1, 100),
)

ALL = [CPU_OVER_PROVISIONING_RATIO, PING_INTERVAL, PING_MAX_FAILURE]
