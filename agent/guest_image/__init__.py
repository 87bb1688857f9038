"""The tiny guest image: a CirrOS-like bootable qcow2 built offline from Debian packages.

`python -m agent.guest_image.build` (or `make guest-image`) builds
``build/tiny-guest.qcow2``: an MBR disk whose FAT partition holds SYSLINUX, the
kernel of ``linux-image-cloud-amd64`` and a busybox initramfs. The guest loads
its virtio drivers, runs DHCP on every NIC, prints one line
``TINY-GUEST up ip=<ip> hostname=<name>`` per NIC on ttyS0 and leaves a root
shell there; with a NoCloud seed in its SMBIOS serial it fetches its user data and runs
it if it is a script. The guest-side scripts (``init.sh``, ``udhcpc.script``, ``inittab``,
``syslinux.cfg``) live beside this file and are read by the builder.

This package does not import :mod:`agent.guest_image.build` itself, so that
``python -m agent.guest_image.build`` runs it without a double import.
"""

from __future__ import annotations

IMAGE_NAME = "tiny-guest.qcow2"
"""File name of the built image (under the project's ``build/`` by default)."""

UP_LINE_PREFIX = "TINY-GUEST up"
"""What the guest prints on its serial console once per NIC that got a lease."""
USER_DATA_BEGIN = "TINY-GUEST user-data begin"
USER_DATA_END = "TINY-GUEST user-data end"
"""Around the output of the user-data script (followed by `` rc=<status>``): the guest
fetches ``<seed>user-data`` from the NoCloud seed in its SMBIOS serial, and runs it if it
starts with ``#!``."""
