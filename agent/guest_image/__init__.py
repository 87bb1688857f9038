"""The tiny guest image: a CirrOS-like bootable qcow2 built offline from Debian packages.

`python -m agent.guest_image.build` (or `make guest-image`) builds
``build/tiny-guest.qcow2``: an MBR disk whose FAT partition holds SYSLINUX, the
kernel of ``linux-image-cloud-amd64`` and a busybox initramfs. The guest loads
its virtio drivers, runs DHCP on every NIC, prints one line
``TINY-GUEST up ip=<ip> hostname=<name>`` per NIC on ttyS0 and leaves a root
shell there. The guest-side scripts (``init.sh``, ``udhcpc.script``, ``inittab``,
``syslinux.cfg``) live beside this file and are read by the builder.

This package does not import :mod:`agent.guest_image.build` itself, so that
``python -m agent.guest_image.build`` runs it without a double import.
"""

from __future__ import annotations

IMAGE_NAME = "tiny-guest.qcow2"
"""File name of the built image (under the project's ``build/`` by default)."""

UP_LINE_PREFIX = "TINY-GUEST up"
"""What the guest prints on its serial console once per NIC that got a lease."""
