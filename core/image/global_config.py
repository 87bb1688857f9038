"""Global configs of images (ZStack's conf/globalConfig/image.xml)."""

from contracts.kvm import DEFAULT_STALL_TIMEOUT
from core.config.definitions import GlobalConfigDef

CATEGORY = "image"

DELETION_POLICY = GlobalConfigDef(
    CATEGORY,
    "deletionPolicy",
    "what DeleteImage does: Direct expunges at once (files on every backup storage too), "
    "Delay keeps the image Deleted (recoverable) for image.expungePeriod, Never keeps it "
    "until ExpungeImage",
    default="Delay",
    valid_values=("Direct", "Delay", "Never"),
)
EXPUNGE_PERIOD = GlobalConfigDef(
    CATEGORY,
    "expungePeriod",
    "seconds a Deleted image is kept (recoverable) before it is expunged, with the Delay policy",
    default="86400",
    type="Integer",
    number_range=(1, 2**31 - 1),
)

EXPUNGE_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "expungeInterval",
    "seconds between two checks for Deleted images whose expunge period has passed",
    default="3600",
    type="Integer",
    number_range=(1, 2**31 - 1),
)

DOWNLOAD_STALL_TIMEOUT = GlobalConfigDef(
    CATEGORY,
    "download.stallTimeout",
    "seconds an image download (AddImage) may receive nothing before it fails",
    default=str(int(DEFAULT_STALL_TIMEOUT)),
    type="Integer",
    number_range=(1, 86400),
)

ALL = [DELETION_POLICY, EXPUNGE_PERIOD, EXPUNGE_INTERVAL, DOWNLOAD_STALL_TIMEOUT]
