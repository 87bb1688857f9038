"""Global configs of VM instances (ZStack's conf/globalConfig/vm.xml)."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "vm"

DELETION_POLICY = GlobalConfigDef(
    CATEGORY,
    "deletionPolicy",
    "what DestroyVmInstance does: Direct expunges at once, Delay keeps the VM Destroyed "
    "(recoverable) for vm.expungePeriod, Never keeps it until ExpungeVmInstance",
    default="Delay",
    valid_values=("Direct", "Delay", "Never"),
)
EXPUNGE_PERIOD = GlobalConfigDef(
    CATEGORY,
    "expungePeriod",
    "seconds a Destroyed VM is kept (recoverable) before it is expunged, with the Delay policy",
    default="604800",
    type="Integer",
    number_range=(1, 2**31 - 1),
)
EXPUNGE_INTERVAL = GlobalConfigDef(
    CATEGORY,
    "expungeInterval",
    "seconds between two checks for Destroyed VMs whose expunge period has passed",
    default="3600",
    type="Integer",
    number_range=(1, 2**31 - 1),
)

ALL = [DELETION_POLICY, EXPUNGE_PERIOD, EXPUNGE_INTERVAL]
