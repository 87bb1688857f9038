"""The KVM host agent: an aiohttp server over libvirt and qemu-img (see contracts.kvm)."""
