# ZStack Lite: `make run` and `make test` bootstrap a fresh Debian 12 machine
# (as root) and are idempotent: each step checks before it changes anything.

SHELL := /bin/bash
VENV := .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

# The real parts the product drives (see ../shared/DESIGN.md), plus what builds
# libvirt-python, runs the terminal-UI system tests and proves the PostgreSQL
# backend (the tests run a private server; none is started for the product).
DEBIAN_PACKAGES := libvirt-daemon-system qemu-system-x86 qemu-utils dnsmasq-base dnsmasq-utils \
	nftables openvswitch-switch busybox-static libvirt-dev pkg-config \
	postgresql python3 python3-venv python3-dev gcc tmux \
	syslinux syslinux-common mtools dosfstools fdisk \
	python3-yaml python3-requests python3-jinja2 python3-configobj python3-jsonpatch \
	python3-jsonschema python3-netifaces

.PHONY: run test install-service service bench bench-vm-simulator bench-vm-libvirt bench-vr-resync bench-vip-nat bench-sg-rules bench-ztui bench-zcli bench-volume-snapshot lint system-deps services guest-image

# The management node is a service: started here when it does not run (these machines
# have no systemd; where systemd runs, `make install-service` makes it a unit instead).
# ztui is a client of it; quitting ztui leaves the node, its VMs and routers running.
run: $(STAMP) services guest-image service
	$(VENV)/bin/ztui

service: $(STAMP) services
	@$(VENV)/bin/zstack-lite start

UNIT := /etc/systemd/system/zstack-lite.service
install-service: $(STAMP)
	@if [ ! -d /run/systemd/system ]; then \
	  echo "systemd does not run here: 'make run' (or '$(VENV)/bin/zstack-lite start') starts the node"; \
	  exit 0; \
	fi; \
	sed -e "s|@VENV@|$(CURDIR)/$(VENV)|g" -e "s|@CONFIG@|$(CURDIR)/config.toml|g" \
	    -e "s|@REPO@|$(CURDIR)|g" core/daemon/zstack-lite.service.in > $(UNIT); \
	systemctl daemon-reload && systemctl enable --now zstack-lite.service && \
	echo "installed $(UNIT); 'systemctl status zstack-lite' shows it"

test: $(STAMP) services
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	ZSL_NO_SKIPS=1 $(VENV)/bin/pytest --durations=25

# Flow engine first (no services needed), then the VM benchmarks on simulator hosts and
# on qemu:///system, then the virtual-router re-sync (root, dnsmasq and nft only).  Each
# prints its targets as HOLDS/MISSED and never fails on them.
bench: $(BENCH_STAMP)
	$(VENV)/bin/python bench/flow_engine.py
	$(MAKE) --no-print-directory bench-vm-simulator bench-vm-libvirt bench-volume-snapshot bench-vr-resync \
	  bench-vip-nat bench-sg-rules bench-ztui bench-zcli

bench-vm-simulator: $(STAMP) services
	$(VENV)/bin/python bench/vm_simulator.py

bench-vm-libvirt: $(STAMP) services guest-image
	$(VENV)/bin/python bench/vm_libvirt.py

bench-volume-snapshot: $(STAMP) services guest-image
	$(VENV)/bin/python bench/volume_snapshot.py

bench-vr-resync: $(STAMP)
	$(VENV)/bin/python bench/vr_resync.py

bench-vip-nat: $(STAMP)
	$(VENV)/bin/python bench/vip_nat.py

bench-sg-rules: $(STAMP)
	$(VENV)/bin/python bench/sg_rules.py

bench-ztui: $(STAMP)
	$(VENV)/bin/python bench/ztui_table.py

bench-zcli: $(STAMP) services
	$(VENV)/bin/python bench/zcli_client.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends $$missing; \
	fi

# Plugins in plugins/ are packages of their own, installed beside the core.
PLUGINS := $(patsubst %/pyproject.toml,%,$(wildcard plugins/*/pyproject.toml))

$(STAMP): pyproject.toml $(addsuffix /pyproject.toml,$(PLUGINS)) | system-deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]' $(addprefix -e ,$(PLUGINS))
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

# No systemd here: start libvirt's daemons ourselves when they are not running.
# /dev/kvm gets group kvm, mode 0660 (what udev does on a normal host), or
# libvirt re-probes QEMU on every domain start.  Open vSwitch runs with its userspace
# datapath (no kernel module here); userspace TSO makes it fill in the checksums the
# kernel leaves to the "hardware" (TCP through it fails without), and takes effect
# only when ovs-vswitchd starts, so it is set before.
OVS_CTL := /usr/share/openvswitch/scripts/ovs-ctl
services: system-deps
	@pgrep -x virtlogd >/dev/null || { echo "starting virtlogd"; virtlogd -d; }
	@pgrep -x libvirtd >/dev/null || { echo "starting libvirtd"; libvirtd -d; }
	@if [ -e /dev/kvm ]; then \
	  getent group kvm >/dev/null || groupadd --system kvm; \
	  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm; \
	fi
	@$(OVS_CTL) status >/dev/null 2>&1 || { \
	  echo "starting Open vSwitch (userspace datapath)"; \
	  $(OVS_CTL) start --system-id=random --no-ovs-vswitchd >/dev/null && \
	  ovs-vsctl --no-wait set Open_vSwitch . other_config:userspace-tso-enable=true && \
	  $(OVS_CTL) start --system-id=random --no-ovsdb-server >/dev/null; }
	@for i in $$(seq 1 60); do \
	  virsh -c qemu:///system version >/dev/null 2>&1 && exit 0; sleep 0.5; \
	done; echo "libvirtd does not answer on qemu:///system" >&2; exit 1

# The tiny guest image (kernel + busybox from Debian packages, SYSLINUX on a FAT
# partition): rebuilt when the builder or its guest scripts change; the builder
# itself skips the work when its inputs digest is unchanged.
GUEST_IMAGE := build/tiny-guest.qcow2
GUEST_IMAGE_SOURCES := $(wildcard agent/guest_image/*.py) agent/guest_image/init.sh \
	agent/guest_image/udhcpc.script agent/guest_image/inittab agent/guest_image/syslinux.cfg

guest-image: $(STAMP) system-deps $(GUEST_IMAGE)

$(GUEST_IMAGE): $(GUEST_IMAGE_SOURCES) | $(STAMP) system-deps
	$(VENV)/bin/python -m agent.guest_image.build --output $@
