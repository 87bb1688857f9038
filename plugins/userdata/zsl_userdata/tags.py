"""User data and SSH keys as ZStack keeps them: system tags on the VM.

``userdata::<base64>`` (at most one per VM, ZStack's ``installUserdataValidator``) and
``sshkey::<public key>`` (any number), taken by ``CreateVmInstance`` only.  The node's cap
on decoded user data is the global config ``userdata.maxSize``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

from core.config.spi import GlobalConfigDef
from core.kernel.errors import argerr
from core.tag.spi import SystemTagDef
from zsl_userdata.contract import MAX_USER_DATA

VM = "VmInstanceVO"
CREATE_VM = "CreateVmInstance"
USERDATA = SystemTagDef("userdata::{userdata}", VM, apis=(CREATE_VM,))
SSHKEY = SystemTagDef("sshkey::{key}", VM, apis=(CREATE_VM,))
USERDATA_PREFIX = "userdata::"
SSHKEY_PREFIX = "sshkey::"
_SSH_KEY = re.compile(r"[\x20-\x7e]{1,8192}")

MAX_SIZE = GlobalConfigDef(
    "userdata",
    "maxSize",
    "the most user data (decoded) a VM may have; its base64 goes into the system tag "
    "userdata::<base64>",
    default="64K",
    type="Size",
    number_range=(0, MAX_USER_DATA),
)


def decode_user_data(text: str, max_size: int) -> bytes:
    """The user data of base64 ``text``, or an argerr naming what is wrong (and changing
    nothing)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise argerr(f"user data must be base64, got {_shown(text)}") from None
    if len(raw) > max_size:
        raise argerr(
            f"user data holds {len(raw)} bytes, more than userdata.maxSize ({max_size} bytes)"
        )
    return raw


def check_tags(tags: Iterable[str], max_size: int) -> None:
    """Refuse (argerr) more than one ``userdata`` tag, one that is not base64 or too big,
    or an ``sshkey`` tag that is not one line of printable ASCII."""
    found = [t for t in tags if t.startswith(USERDATA_PREFIX)]
    if len(found) > 1:
        raise argerr(f"a VM has at most one userdata tag, got {len(found)}")
    for tag in found:
        decode_user_data(tag[len(USERDATA_PREFIX) :], max_size)
    for tag in tags:
        if tag.startswith(SSHKEY_PREFIX) and not _SSH_KEY.fullmatch(tag[len(SSHKEY_PREFIX) :]):
            raise argerr(f"an sshkey tag holds one line of printable ASCII, got {_shown(tag)}")


def split_tags(tags: Iterable[str]) -> tuple[str, list[str]]:
    """``(base64 user data or "", ssh keys)`` of a VM's tags."""
    user_data, keys = "", []
    for tag in tags:
        if tag.startswith(USERDATA_PREFIX):
            user_data = tag[len(USERDATA_PREFIX) :]
        elif tag.startswith(SSHKEY_PREFIX):
            keys.append(tag[len(SSHKEY_PREFIX) :])
    return user_data, sorted(keys)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")
