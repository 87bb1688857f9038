"""Global configs of images (ZStack's conf/globalConfig/image.xml)."""

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

ALL = [DELETION_POLICY, EXPUNGE_PERIOD, EXPUNGE_INTERVAL]
