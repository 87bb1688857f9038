"""Global configs of the KVM hypervisor area (ZStack's conf/globalConfig/kvm.xml)."""

from core.config.definitions import GlobalConfigDef

CATEGORY = "kvm"

RESERVED_MEMORY = GlobalConfigDef(
    CATEGORY,
    "reservedMemory",
    "memory reserved on every KVM host for the agent and other host programs; never given "
    "to VMs; a change applies to every host's capacity at once",
    default="512M",
    type="Size",
)
VM_MIGRATION_QUANTITY = GlobalConfigDef(
    CATEGORY,
    "vm.migrationQuantity",
    "how many VMs can be migrated in parallel when a KVM host enters maintenance",
    default="2",
    type="Integer",
    number_range=(1, 2**31 - 1),
)

ALL = [RESERVED_MEMORY, VM_MIGRATION_QUANTITY]
