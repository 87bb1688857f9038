"""Global configs of volume snapshots (ZStack's conf/globalConfig/volumeSnapshot.xml)."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "volumeSnapshot"

INCREMENTAL_MAX_NUM = GlobalConfigDef(
    CATEGORY,
    "incrementalSnapshot.maxNum",
    "snapshots a chain may hold (the latest and its ancestors): when the latest snapshot's "
    "chain has this many, the next snapshot is a full one and starts a new chain (at most "
    "120: QEMU's query-block fails on a disk of more than about 121 layers)",
    default="64",
    type="Integer",
    number_range=(1, 120),
)

ALL = [INCREMENTAL_MAX_NUM]
