"""Global configs of garbage collection (category ``gc``)."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "gc"
_MAX = (1, 2**31 - 1)

RETRY_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "retry.interval",
    "seconds before a GC job's first run; each failed run doubles the wait, up to "
    "gc.retry.maxInterval (a trigger event, such as its host reconnecting, runs it at once)",
    default="60",
    type="Integer",
    number_range=_MAX,
)
RETRY_MAX_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "retry.maxInterval",
    "the longest wait, in seconds, between two runs of a GC job that keeps failing",
    default="3600",
    type="Integer",
    number_range=_MAX,
)
DONE_RETENTION = GlobalConfigDef(
    CATEGORY,
    "done.retention",
    "seconds a GC job that succeeded (Done) is kept before it is deleted",
    default="1209600",
    type="Integer",
    number_range=(0, 2**31 - 1),
)
SCAN_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "scan.interval",
    "seconds between two scans of the GC jobs table: due jobs run, Done jobs past "
    "gc.done.retention are deleted",
    default="10",
    type="Integer",
    number_range=(1, 86400),
)

ALL = [RETRY_INTERVAL, RETRY_MAX_INTERVAL, DONE_RETENTION, SCAN_INTERVAL]
