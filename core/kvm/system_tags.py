"""System tags the KVM host connect flow records on hosts (ZStack's KVMSystemTags)."""

from core.tag.definitions import SystemTagDef

QEMU_IMG_VERSION = SystemTagDef("qemu-img::version::{version}", "HostVO")
LIBVIRT_VERSION = SystemTagDef("libvirt::version::{version}", "HostVO")
HVM_CPU_FLAG = SystemTagDef("hvm::{flag}", "HostVO")

ALL = [QEMU_IMG_VERSION, LIBVIRT_VERSION, HVM_CPU_FLAG]
