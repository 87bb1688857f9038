"""The virtual-router appliance agent's HTTP contract, in the shape of ZStack's VR agent.

The agent runs inside the appliance's network namespace and listens on a Unix
socket (mode 0600) given on its command line.  Every command is ``POST <path>``
with a JSON object, authenticated by ``Authorization: Bearer <token>`` (the
token file is given on the command line, mode 0600).  Every answer is a JSON
object with ``success`` (bool) and ``error`` (a string, empty on success) plus
the command's own fields; 401 / 404 / 400 as for every agent
(contracts.envelope).  All commands are synchronous.

Interfaces are named by MAC (``vrNicMac``, ``privateNicMac``, ``publicNicMac``,
``nicMac``), as ZStack does: the agent finds the interface with that MAC in its
namespace.  MACs are ``aa:bb:cc:dd:ee:ff`` (any case); addresses are dotted
IPv4; netmasks dotted (``255.255.255.0``).  With ``--simulate`` (no namespace,
no dnsmasq, no nft; state in memory) every MAC names an interface, and every
other check is the same.

A command whose fields are missing or invalid (bad IP or MAC, no interface with
a given MAC, ...) fails with an error naming the field and value, and changes
nothing.  A command that fails while applying (dnsmasq cannot start, nft
rejects the ruleset) restores the previous state before answering.

Types used below:

* ``DhcpEntry`` = ``{ip, mac, netmask, gateway, hostname, dnsDomain,
  dns: [str], isDefaultL3Network: bool, vrNicMac}``: a static lease.
  ``ip``, ``mac``, ``netmask`` and ``vrNicMac`` are required; ``gateway`` is
  required when ``isDefaultL3Network`` is true (the default); ``hostname``,
  ``dnsDomain`` and ``dns`` (the DNS servers given to the guest, normally the
  appliance's own guest address) are optional.  For the default L3 network the
  guest gets router, DNS servers and domain name; for other networks the
  router and DNS options are sent empty, so a guest keeps its default route.
* ``DnsInfo`` = ``{dnsAddress, nicMac}``: an upstream DNS server dnsmasq
  forwards to, and the guest interface (by MAC) on which DNS is served.
* ``Snat`` = ``{privateNicMac, privateNicIp, snatNetmask, publicNicMac, publicIp}``:
  traffic from the private network (``privateNicIp``/``snatNetmask``) leaving by
  the public interface is source-NATed to ``publicIp``.

Crashes: every command sets a desired state (replace, add or remove by key), so sending
it again is harmless.  An agent that died loses its state: the next one (started by the
host agent's APPLIANCE_CREATE) stops the dnsmasq the dead one left, answers ``/ping``
with an empty ``uuid``, and the node replays the router's whole state (``/init``, DNS,
DHCP with ``rebuild``, ``/syncsnat``, which replaces the nft table left behind).  The
test-only fault hook ``ZSL_AGENT_FAULT`` (agentkit.fault) works here too.
"""

from __future__ import annotations

from typing import Final

from contracts.base import Ack, Reply, Request, Wire

NFT_TABLE: Final = "zsl_vr_nat"
"""The one nftables table (family ``ip``) the agent owns in its namespace."""

LOG_FILE: Final = "vr-agent.log"

# -- agent ---------------------------------------------------------------------
INIT: Final = "/init"
"""{uuid} -> {}: sets the agent's signature (the appliance's uuid)."""

PING: Final = "/ping"
"""{} -> {uuid, repaired: [str], dnsmasq: {pid, restarts, lastExit, reloads}}: ``uuid``
is the signature set by /init ("" after an agent restart, so the core notices and
replays everything).  Before answering, the agent checks that dnsmasq runs (when it
should) and that the nft table exists with the expected content (when SNAT entries
exist), repairs what is wrong from its desired state, and lists what it repaired (e.g.
``"dnsmasq restarted (killed by SIGSEGV)"``, ``"nft table zsl_vr_nat restored"``,
``"ip_forward enabled"``).  A repair that fails fails the ping, with an error naming it.
A watchdog does the same every 2 s, so repairs also happen between pings.  ``dnsmasq``:
its ``pid`` (null when it does not run), how many times this agent had to start it again
after it exited on its own (``restarts``; a restart for a changed interface or range is
not one) and how the last such exit happened (``lastExit``: ``"killed by SIGSEGV"``,
``"exit status 2"``, "" if none), and how many times it re-read its files (``reloads``)."""

# -- DHCP ----------------------------------------------------------------------
ADD_DHCP: Final = "/adddhcp"
"""{rebuild: bool, dhcpEntryList: [DhcpEntry]} -> {}: with ``rebuild`` the list
replaces every entry; otherwise each entry replaces any entry with the same
``ip`` or the same ``mac``.  dnsmasq serves static leases only, on the
interfaces that have entries (or DNS)."""

REMOVE_DHCP: Final = "/removedhcp"
"""{dhcpEntryList: [DhcpEntry]} -> {}: removes the entries with those MACs or IPs
(``ip`` and ``mac`` are required, other fields are ignored: :class:`DhcpKeyTO` sends
only them) and releases their leases (``dhcp_release``; the lease file is pruned as
well).  Entries that do not exist are ignored."""

# -- DNS -----------------------------------------------------------------------
SET_DNS: Final = "/setdns"
"""{dns: [DnsInfo]} -> {}: replaces the upstream DNS servers (in order) and the
interfaces DNS is served on.  dnsmasq re-reads its upstream servers; it restarts only
when the interfaces change."""

REMOVE_DNS: Final = "/removedns"
"""{dns: [DnsInfo]} -> {}: removes those ``dnsAddress``/``nicMac`` pairs."""

# -- SNAT ----------------------------------------------------------------------
SET_SNAT: Final = "/setsnat"
"""{snats: [Snat]} -> {}: adds each entry, replacing any with the same ``privateNicMac``."""

REMOVE_SNAT: Final = "/removesnat"
"""{snats: [Snat]} -> {}: removes the entries with those ``privateNicMac`` (only
that field is read)."""

SYNC_SNAT: Final = "/syncsnat"
"""{snats: [Snat]} -> {}: the list replaces every entry (an empty list removes the
table).  The table ``ip zsl_vr_nat`` is always replaced in one nft transaction;
IPv4 forwarding is turned on in the namespace while SNAT entries exist."""


# -- typed commands, in the order above ---------------------------------------------


class InitCmd(Request[Ack]):
    PATH = INIT
    uuid: str


class DnsmasqStatusTO(Wire):
    pid: int | None = None
    restarts: int = 0
    last_exit: str = ""
    reloads: int = 0


class PingRsp(Reply):
    uuid: str
    repaired: list[str] = []
    dnsmasq: DnsmasqStatusTO = DnsmasqStatusTO()


class PingCmd(Request[PingRsp]):
    PATH = PING


class DhcpKeyTO(Wire):
    """What /removedhcp names an entry by (the rest of a ``DhcpEntry`` is ignored there)."""

    ip: str
    mac: str


class DhcpEntryTO(DhcpKeyTO):
    netmask: str
    vr_nic_mac: str
    gateway: str = ""
    hostname: str = ""
    dns_domain: str = ""
    dns: list[str] = []
    is_default_l3_network: bool = True


class AddDhcpCmd(Request[Ack]):
    PATH = ADD_DHCP
    rebuild: bool = False
    dhcp_entry_list: list[DhcpEntryTO]


class RemoveDhcpCmd(Request[Ack]):
    PATH = REMOVE_DHCP
    dhcp_entry_list: list[DhcpKeyTO]


class DnsInfoTO(Wire):
    dns_address: str
    nic_mac: str


class SetDnsCmd(Request[Ack]):
    PATH = SET_DNS
    dns: list[DnsInfoTO]


class RemoveDnsCmd(Request[Ack]):
    PATH = REMOVE_DNS
    dns: list[DnsInfoTO]


class SnatTO(Wire):
    private_nic_mac: str
    private_nic_ip: str
    snat_netmask: str
    public_nic_mac: str
    public_ip: str


class SetSnatCmd(Request[Ack]):
    PATH = SET_SNAT
    snats: list[SnatTO]


class RemoveSnatCmd(Request[Ack]):
    PATH = REMOVE_SNAT
    snats: list[SnatTO]


class SyncSnatCmd(Request[Ack]):
    PATH = SYNC_SNAT
    snats: list[SnatTO]
