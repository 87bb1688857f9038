"""What a guest reads from the metadata service: NoCloud's meta-data and user-data, and
the same as EC2-style paths.  Built from an entry alone; nothing a guest sends is used but
its address (which chose the entry) and the path (which chose the document)."""

from __future__ import annotations

import json
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart

from zsl_userdata.contract import UserdataEntryTO


def meta_data(entry: UserdataEntryTO) -> str:
    """NoCloud's meta-data (YAML); both values are safe plain scalars (the contract checks
    them: hex, and a DNS label)."""
    return f"instance-id: {entry.vm_uuid}\nlocal-hostname: {entry.hostname}\n"


def ssh_keys_config(keys: list[str]) -> str:
    """A ``#cloud-config`` that authorises ``keys`` (each a JSON string: valid YAML)."""
    lines = ["#cloud-config", "ssh_authorized_keys:"]
    lines += [f"  - {json.dumps(key)}" for key in keys]
    return "\n".join(lines) + "\n"


def _part(text: str, subtype: str) -> MIMENonMultipart:
    """A UTF-8 text part sent as it is (8bit), not base64: a person reading the user data
    sees the script and the keys (cloud-init reads either)."""
    part = MIMENonMultipart("text", subtype, charset="utf-8")
    part.set_payload(text.encode().decode("ascii", "surrogateescape"))
    part["Content-Transfer-Encoding"] = "8bit"
    return part


def _subtype(data: bytes) -> str:
    """The MIME subtype cloud-init knows the user data by (its first line)."""
    if data.startswith(b"#!"):
        return "x-shellscript"
    if data.startswith(b"#cloud-config"):
        return "cloud-config"
    return "plain"


def user_data(entry: UserdataEntryTO) -> bytes:
    """The VM's user data as given; with SSH keys, a MIME multipart of it and a second
    ``#cloud-config`` part with ``ssh_authorized_keys`` (ZStack's UserdataBuilder)."""
    data = entry.decoded()
    if not entry.ssh_keys:
        return data
    keys = ssh_keys_config(entry.ssh_keys)
    if not data:
        return keys.encode()
    message = MIMEMultipart()
    try:
        first = _part(data.decode(), _subtype(data))
    except UnicodeDecodeError:  # gzip or other binary user data cannot be a text part
        return data
    message.attach(first)
    message.attach(_part(keys, "cloud-config"))
    return message.as_bytes()
