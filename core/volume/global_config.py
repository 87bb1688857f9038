"""Global configs of volumes (ZStack's conf/globalConfig/volume.xml) and the KVM limit on
a VM's data volumes."""

from contracts.kvm import MAX_DATA_VOLUMES
from core.config.definitions import GlobalConfigDef

CATEGORY = "volume"

DELETION_POLICY = GlobalConfigDef(
    CATEGORY,
    "deletionPolicy",
    "what DeleteDataVolume does: Direct expunges at once (its files and snapshots too), "
    "Delay keeps it Deleted (recoverable) for volume.expungePeriod, Never keeps it until "
    "ExpungeDataVolume",
    default="Delay",
    valid_values=("Direct", "Delay", "Never"),
)
EXPUNGE_PERIOD = GlobalConfigDef(
    CATEGORY,
    "expungePeriod",
    "seconds a Deleted data volume is kept (recoverable) before it is expunged, with the "
    "Delay policy",
    default="86400",
    type="Integer",
    number_range=(1, 2**31 - 1),
)
EXPUNGE_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "expungeInterval",
    "seconds between two checks for Deleted data volumes whose expunge period has passed",
    default="3600",
    type="Integer",
    number_range=(1, 2**31 - 1),
)
DATA_VOLUME_MAX_NUM = GlobalConfigDef(
    "kvm",
    "dataVolume.maxNum",
    f"how many data volumes a VM may have attached (at most {MAX_DATA_VOLUMES}: vdb..vdy)",
    default=str(MAX_DATA_VOLUMES),
    type="Integer",
    number_range=(0, MAX_DATA_VOLUMES),
)

ALL = [DELETION_POLICY, EXPUNGE_PERIOD, EXPUNGE_INTERVAL, DATA_VOLUME_MAX_NUM]
