"""Global configs of the operations journal."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "operationLog"

RETENTION = GlobalConfigDef(
    CATEGORY,
    "retention",
    "finished operations kept in the operation log; the oldest beyond this number are "
    "deleted as new ones are written",
    default="1000",
    type="Integer",
    number_range=(1, 10_000_000),
)

ALL = [RETENTION]
