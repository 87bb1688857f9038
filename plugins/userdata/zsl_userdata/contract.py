"""The router agent's commands this plugin adds, and what a guest sees of the service.

Each entry is one guest NIC: the metadata server in the appliance answers a request from
``ip`` (whose neighbour entry must be ``mac``) with that VM's meta-data and user data.
``sync`` replaces every entry; ``apply`` adds or replaces entries by IP; ``release``
removes them (an unknown IP is fine).
"""

from __future__ import annotations

import base64
import binascii
import re
from ipaddress import IPv4Address
from typing import Final

from pydantic import Field, field_validator

from contracts.base import Ack, Request, Wire

SERVICE_TYPE: Final = "Userdata"
"""The network service type this plugin adds to the ``VirtualRouter`` provider."""
METADATA_IP: Final = "169.254.169.254"
METADATA_PORT: Final = 80
SEED: Final = f"ds=nocloud-net;s=http://{METADATA_IP}/nocloud/"
"""The SMBIOS serial of a served VM: cloud-init's NoCloud seed.  ``nocloud-net``, not
``nocloud``: cloud-init before 24.1 (Debian 12 has 22.4.2) takes an http seed from DMI
only under that name (canonical/cloud-init#4951)."""

SYNC: Final = "/userdata/sync"
"""{guestMac, entries} -> {}: the appliance serves exactly these entries, on
169.254.169.254:80, an address it holds on its guest interface (``guestMac``)."""
APPLY: Final = "/userdata/apply"
"""{guestMac, entries} -> {}: these entries are added (or replace the entry of their IP)."""
RELEASE: Final = "/userdata/release"
"""{ips} -> {}: the entries of these IPs are removed."""

MAX_USER_DATA: Final = 1 << 20
"""Bytes of (decoded) user data an entry may carry at most, whatever the node's cap."""
_MAC = r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$"
_UUID = r"^[0-9a-f]{32}$"
_HOSTNAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
_SSH_KEY = r"^[\x20-\x7e]{1,8192}$"


class UserdataEntryTO(Wire):
    ip: IPv4Address
    mac: str = Field(pattern=_MAC)
    vm_uuid: str = Field(pattern=_UUID)
    hostname: str = Field(pattern=_HOSTNAME)
    user_data: str = ""
    """Base64 of the user data ("" for none)."""
    ssh_keys: list[str] = Field(default=[], max_length=64)

    @field_validator("user_data")
    @classmethod
    def _base64(cls, value: str) -> str:
        try:
            raw = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError("is not base64") from None
        if len(raw) > MAX_USER_DATA:
            raise ValueError(f"holds more than {MAX_USER_DATA} bytes")
        return value

    @field_validator("ssh_keys")
    @classmethod
    def _keys(cls, value: list[str]) -> list[str]:
        for key in value:
            if not re.fullmatch(_SSH_KEY, key):
                raise ValueError("an SSH key is one line of printable ASCII")
        return value

    def decoded(self) -> bytes:
        return base64.b64decode(self.user_data)


class SyncUserdataCmd(Request[Ack]):
    PATH = SYNC
    guest_mac: str = Field(pattern=_MAC)
    entries: list[UserdataEntryTO] = Field(default=[], max_length=4096)


class ApplyUserdataCmd(Request[Ack]):
    PATH = APPLY
    guest_mac: str = Field(pattern=_MAC)
    entries: list[UserdataEntryTO] = Field(max_length=4096)


class ReleaseUserdataCmd(Request[Ack]):
    PATH = RELEASE
    ips: list[IPv4Address] = Field(max_length=4096)
