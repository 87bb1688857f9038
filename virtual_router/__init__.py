"""The virtual-router appliance agent: DHCP, DNS (dnsmasq) and SNAT (nftables) for guest
networks, run inside the appliance's network namespace and driven by the core over HTTP
on a Unix socket (see contracts.virtual_router)."""
