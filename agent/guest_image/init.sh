#!/bin/sh
# /init of the tiny guest's initramfs (busybox sh, PID 1).
# Mounts the kernel filesystems, loads the virtio drivers listed in
# /etc/tiny-guest.modules, starts one udhcpc per NIC (its script prints the
# "TINY-GUEST up" line), waits a little for the leases, fetches and runs its
# user data (below), then hands PID 1 to busybox init, whose /etc/inittab gives
# a root shell on ttyS0.
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root

mount -t devtmpfs devtmpfs /dev 2>/dev/null
[ -c /dev/console ] && exec </dev/console >/dev/console 2>&1
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs tmpfs /tmp

hostname tiny-guest
ip link set lo up

# Drivers, dependencies first (the builder computed the order).
while read -r mod; do
    [ -n "$mod" ] || continue
    insmod "/lib/modules/$mod" 2>/dev/null || echo "tiny-guest: cannot load $mod"
done </etc/tiny-guest.modules

# ACPI power button -> poweroff, so a graceful shutdown of the domain works.
[ -e /dev/input ] && acpid -c /etc/acpi -l /run/acpid.log 2>/dev/null

nics() {
    for dev in /sys/class/net/*; do
        name=${dev##*/}
        [ "$name" = lo ] || [ ! -e "$dev/device" ] || echo "$name"
    done
}

# virtio_net registers its devices as the module loads; give udev-less
# probing a moment if none is there yet.
i=0
while [ -z "$(nics)" ] && [ $i -lt 20 ]; do sleep 0.1; i=$((i + 1)); done

mkdir -p /run/tiny-guest /run/resolv
# No NIC at all (a VM on no network): still say the guest is up, once.
[ -n "$(nics)" ] || echo "TINY-GUEST up ip=none hostname=$(hostname)"
for nic in $(nics); do
    ip link set "$nic" up
    udhcpc -f -i "$nic" -s /etc/udhcpc.script -O hostname -O domain -T 1 -t 5 -A 3 \
        >"/run/udhcpc.$nic.log" 2>&1 </dev/null &
done

# Wait (at most ~10 s) for every NIC to report, so the lines come before the
# shell prompt; a late lease still prints its line when it comes.
i=0
while [ $i -lt 100 ]; do
    pending=0
    for nic in $(nics); do
        [ -e "/run/tiny-guest/up.$nic" ] || pending=1
    done
    [ $pending -eq 0 ] && break
    sleep 0.1
    i=$((i + 1))
done

# User data, as cloud-init's NoCloud would find it: the seed is the SMBIOS serial
# (ds=nocloud[-net];s=http://.../), its user-data is fetched once the leases are in
# and, if it is a script (#!), run once per boot (the tiny guest keeps nothing) in
# the background, at most 5 minutes, its output framed on the console.
user_data() {
    seed=$(cat /sys/class/dmi/id/product_serial 2>/dev/null)
    url=$(echo "$seed" | sed -n 's|^ds=nocloud[^;]*;s=\(http://[^;]*\).*|\1|p')
    [ -n "$url" ] || return 0
    # (busybox 1.35's wget -T crashes: timeout bounds it instead)
    if ! timeout 10 wget -q -O /run/user-data "${url}user-data"; then
        echo "TINY-GUEST user-data unavailable from ${url}user-data"
        return 0
    fi
    [ "$(head -c 2 /run/user-data)" = "#!" ] || return 0
    chmod 0700 /run/user-data
    echo "TINY-GUEST user-data begin"
    timeout 300 /run/user-data </dev/null 2>&1
    echo "TINY-GUEST user-data end rc=$?"
}
user_data >/dev/console 2>&1 &

exec /sbin/init
