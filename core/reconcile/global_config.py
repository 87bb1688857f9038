"""Global configs of the reconciler (category ``reconcile``)."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "reconcile"
NEVER = "Never"

INTERVAL = GlobalConfigDef(
    CATEGORY,
    "interval",
    "seconds between two comparisons of every Connected host with the database (one runs "
    "when the node starts); 0: only when the node starts",
    default="300",
    type="Integer",
    number_range=(0, 2**31 - 1),
)
ORPHAN_GRACE_PERIOD = GlobalConfigDef(
    CATEGORY,
    "orphanGracePeriod",
    "seconds an object of the lab on a host must have had no owner in the database, seen so "
    "by every comparison, before it is removed (longer than any operation, which makes "
    "objects before their rows commit); Never: keep and report orphans (QueryHostOrphan)",
    default="900",
    regex=r"Never|[0-9]{1,10}",
)

ALL = [INTERVAL, ORPHAN_GRACE_PERIOD]


def grace_seconds(value: str) -> float | None:
    """The grace period in seconds; None for ``Never``."""
    return None if value == NEVER else float(value)
