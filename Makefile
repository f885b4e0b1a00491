# SPDX-License-Identifier: GPL-2.0
# VIP top-level build. Kbuild (not this file) describes the module to the kernel's build.
#
#   make setup     install packages and tools, build the test kernel (cached), userland
#   make           build vip.ko against the cached kernel
#   make test      lint, userland tests, the scenario suite in QEMU VMs on the test kernel,
#                  and most kernel-facing scripts again on the debug kernel (KASAN, UBSAN,
#                  kmemleak, lockdep, PROVE_RCU, stall and hung-task detectors): three
#                  boots side by side (test-vms)
#   make test-vm-debug-all   every kernel-facing script on the debug kernel (over an hour)
#   make demo      boot the VM and run the demo topology
#   make shell     a shell in the VM, with the module and tools built
#   make bench     the protocol's CPU cost on the host, then the data path, ESP (against
#                  WireGuard and plain ESP), lookups, switching (and beside WireGuard's
#                  roaming) and partner benchmarks in the VM (ratios side by side)
#   make fuzz      the cargo-fuzz targets of the wire format and the protocol engine
#   make soak      hosts move every few seconds for SOAK_SECONDS (600) under TCP, UDP and
#                  ping, vipd restarting twice; streams intact, no growth (tests/soak.sh)
#   make lint      clippy, rustfmt and the module built with CLIPPY=1 (part of make test)
#   make test-detectors   show once that the VM's kernel-log scan catches every kind of
#                  report (a deliberately broken module, one boot per kind: slow)
#   make install   vip.ko into /lib/modules/KVER/extra (KDIR=a Rust-enabled kernel's build
#                  tree; by default the cached test kernel), vipd, vipctl, the systemd
#                  unit, the example configuration, man pages, shell completions
#                  (DESTDIR, PREFIX=/usr)
#
# KERNEL=debug selects the debug kernel for module, test-vm, demo, shell and bench.

KERNEL ?= default
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VM := $(ROOT)/tests/vm
include $(VM)/env.mk
# Arguments for the kernel build of our module; the kernel directory comes from build-kernel.
KARGS = M=$(ROOT) LLVM=$(VIP_LLVM) RUSTC=$(VIP_RUSTC) BINDGEN=$(VIP_BINDGEN)


.PHONY: all module setup kernel userland test test-userland test-vm test-vm-debug test-vm-debug-all test-vms demo \
	shell bench lint clean test-detectors fuzz soak install install-module install-userland test-install \
	install-dkms deb deb-dkms

all: module

setup: kernel userland

kernel:
	@$(VM)/build-kernel $(KERNEL) >/dev/null
	@$(VM)/build-kernel debug >/dev/null

# .vip-kdir records which kernel vip.ko was built for, so that the VM never loads it into
# another (the debug and default kernels share this build directory).
module:
	@kdir=$$($(VM)/build-kernel $(KERNEL)) && \
	  { [ "$$(cat .vip-kdir 2>/dev/null)" = "$$kdir" ] || rm -f vip.ko; } && \
	  $(MAKE) -C $$kdir $(KARGS) modules && echo "$$kdir" > .vip-kdir

userland:
	cd userland && cargo build --release --locked

test-userland:
	cd userland && cargo test --release --locked

test-vm: module userland
	$(VM)/run --kernel $(KERNEL)

# The scripts that exercise the module directly (marked "kernel-facing" in their headers),
# on the debug kernel; vip.ko is rebuilt for it, and for the test kernel again afterwards.
# Under TCG the debug kernel runs these 5-15 times slower, so make test (CI, 90 minutes
# from a fresh machine) runs there the module's load and netlink basics (10-module,
# 20-genl, about a minute each) and the two that reach its lifetime and netlink paths
# hardest from an unprivileged user: devices failing to register and user namespaces going
# under traffic (45-userns) and the netlink fuzzer (80-fuzz-netlink, 8,000 messages a run
# there instead of 20,000: about 4 minutes). 56-teardown (rmmod, link and
# namespace deletion under floods: 11 minutes there, the floods taking the emulated CPU
# from everything else) and the others exercise paths these also cover;
# test-vm-debug-all runs every kernel-facing script, the fuzzer at full length.
KERNEL_FACING = $(shell grep -l '^\# kernel-facing' $(ROOT)/tests/[0-9]*.sh)
DEBUG_SLOW = 40-map 50-datapath 52-hardening 55-kick 56-teardown 66-esp \
	81-fuzz-packets
DEBUG_SCRIPTS ?= $(filter-out $(DEBUG_SLOW:%=$(ROOT)/tests/%.sh),$(KERNEL_FACING))
DEBUG_RUN_ARGS ?= --env VIP_FUZZ_NETLINK=8000
test-vm-debug: userland
	@$(MAKE) --no-print-directory module KERNEL=debug
	$(VM)/run --kernel debug $(DEBUG_RUN_ARGS) $(DEBUG_SCRIPTS); rc=$$?; \
	  $(MAKE) --no-print-directory module KERNEL=$(KERNEL) >/dev/null; exit $$rc

# What make test runs in VMs: every script on the test kernel, split over TEST_LANES boots,
# and DEBUG_SCRIPTS on the debug kernel in one more boot, all at the same time
# (tests/vm/lanes): under TCG one boot keeps the host's cores less than half busy, so
# three side by side take about half as long as one after the other. vip.ko is built for
# the debug kernel first and kept in .vip-modules/debug, then for the test kernel again.
TEST_LANES ?= 2
ALL_SCRIPTS = $(sort $(wildcard $(ROOT)/tests/[0-9]*.sh))
test-vms: userland
	@$(MAKE) --no-print-directory module KERNEL=debug
	@rm -rf .vip-modules/debug && mkdir -p .vip-modules/debug && cp vip.ko .vip-kdir .vip-modules/debug/
	@$(MAKE) --no-print-directory module KERNEL=$(KERNEL)
	$(VM)/lanes --split $(TEST_LANES) --kernel $(KERNEL) -- $(ALL_SCRIPTS) \
	  --and --kernel debug --module-dir .vip-modules/debug $(DEBUG_RUN_ARGS) -- $(DEBUG_SCRIPTS)

test-vm-debug-all:
	$(MAKE) --no-print-directory test-vm-debug DEBUG_SCRIPTS="$(KERNEL_FACING)" DEBUG_RUN_ARGS="--timeout 6000"

test: lint test-userland test-install test-vms

# cargo-fuzz needs a nightly toolchain (rustup's); FUZZ_SECONDS per target.
FUZZ_SECONDS ?= 60
fuzz:
	@command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
	cd userland/vip-proto && for t in decode engine; do \
	  cargo +nightly fuzz run $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# The soak runs as long as asked: the script's limit and the VM's follow SOAK_SECONDS.
SOAK_SECONDS ?= 600
soak: module userland
	$(VM)/run --kernel $(KERNEL) --timeout $$(($(SOAK_SECONDS) + 600)) --env SOAK_SECONDS=$(SOAK_SECONDS) \
	  --env VIP_SCRIPT_TIMEOUT=$$(($(SOAK_SECONDS) + 300)) $(ROOT)/tests/soak.sh

test-detectors: module
	$(ROOT)/tests/detectors/run

demo: module userland
	$(VM)/run --kernel $(KERNEL) $(ROOT)/tests/demo.sh

shell: module userland
	$(VM)/run --kernel $(KERNEL) --shell

# BENCH_SCRIPTS picks some of them, for example `make bench BENCH_SCRIPTS=esp`; BENCH_CPU
# a QEMU CPU model for the VM (`make bench BENCH_SCRIPTS=esp BENCH_CPU=max`: AES-NI and AVX2).
BENCH_SCRIPTS ?= datapath esp lookup detect switching roaming partners
BENCH_CPU ?=
# The guest's job directory is deleted when the VM exits: the switching and roaming
# benchmarks print their samples into the log, and the plots (switching.png, roaming.png)
# are drawn here from bench-out/bench.log.
bench: module userland
	@mkdir -p $(ROOT)/bench-out
	cd userland && cargo run --release --locked -q -p vip-proto --example cost | tee $(ROOT)/bench-out/cost.log
	set -o pipefail; $(VM)/run --kernel $(KERNEL) --timeout 6000 $(if $(BENCH_CPU),--cpu $(BENCH_CPU)) \
	  $(BENCH_SCRIPTS:%=$(ROOT)/tests/bench/%.sh) \
	  | tee $(ROOT)/bench-out/bench.log; \
	  rc=$$?; $(if $(filter switching,$(BENCH_SCRIPTS)),/usr/bin/python3 $(ROOT)/tests/bench/switching.py \
	    plot $(ROOT)/bench-out/bench.log $(ROOT)/bench-out || rc=1;) \
	  $(if $(filter roaming,$(BENCH_SCRIPTS)),/usr/bin/python3 $(ROOT)/tests/bench/switching.py \
	    plot-roaming $(ROOT)/bench-out/bench.log $(ROOT)/bench-out || rc=1;) \
	  exit $$rc

PREFIX ?= /usr
DESTDIR ?=
install: install-module install-userland

# The module for KDIR's kernel (the cached test kernel by default); .vip-kdir follows, so
# that the VM never loads a vip.ko built for another kernel. depmod makes its aliases
# (rtnl-link-vip, the genetlink family) known, so `ip link add ... type vip` and vipd load it.
install-module:
	@kdir=$${KDIR:-$$($(VM)/build-kernel $(KERNEL))}; \
	  { [ "$$(cat .vip-kdir 2>/dev/null)" = "$$kdir" ] || rm -f vip.ko; } && \
	  $(MAKE) -C $$kdir $(KARGS) modules && echo "$$kdir" > .vip-kdir && \
	  kver=$$(cat $$kdir/include/config/kernel.release) && \
	  install -D -m 0644 vip.ko $(DESTDIR)/lib/modules/$$kver/extra/vip.ko && \
	  depmod $${DESTDIR:+-b $(DESTDIR)} $$kver

# The userland's Debian package (cargo-deb, into $(VIP_CACHE)/tools on first use) from what
# install-userland lays out: userland/target/debian/vip_VERSION-1_ARCH.deb.
CARGO_DEB_VERSION = 3.8.0
CARGO_DEB = $(VIP_CACHE)/tools/bin/cargo-deb
deb: userland
	@$(CARGO_DEB) --version 2>/dev/null | grep -q ' $(CARGO_DEB_VERSION)$$' || \
	  cargo install --quiet --locked --root $(VIP_CACHE)/tools --version $(CARGO_DEB_VERSION) cargo-deb
	rm -rf userland/target/deb-root && rm -f userland/target/debian/vip_*.deb
	$(MAKE) --no-print-directory install-userland DESTDIR=$(ROOT)/userland/target/deb-root PREFIX=/usr
	cd userland && $(CARGO_DEB) -p vipd --no-build --locked --strip --quiet -o target/debian/

# The module's source as a Debian package for DKMS (vip-dkms, as wireguard-dkms was), laid
# out by install-dkms; maintainer scripts as dh_dkms writes them (packaging/vip-dkms).
DKMS_DEB_ROOT = $(ROOT)/userland/target/dkms-root
deb-dkms:
	rm -rf $(DKMS_DEB_ROOT) && mkdir -p $(ROOT)/userland/target/debian
	$(MAKE) --no-print-directory install-dkms DESTDIR=$(DKMS_DEB_ROOT)
	install -d $(DKMS_DEB_ROOT)/DEBIAN $(DKMS_DEB_ROOT)/usr/share/doc/vip-dkms
	install -m 0644 $(ROOT)/README.md $(DKMS_DEB_ROOT)/usr/share/doc/vip-dkms/
	sed 's/@VERSION@/$(DKMS_VERSION)/g; s/@SIZE@/'"$$(du -sk --exclude=DEBIAN $(DKMS_DEB_ROOT) | cut -f1)"'/' \
	  $(ROOT)/packaging/vip-dkms/control.in > $(DKMS_DEB_ROOT)/DEBIAN/control
	for s in postinst prerm; do \
	  sed 's/@VERSION@/$(DKMS_VERSION)/g' $(ROOT)/packaging/vip-dkms/$$s > $(DKMS_DEB_ROOT)/DEBIAN/$$s && \
	  chmod 0755 $(DKMS_DEB_ROOT)/DEBIAN/$$s || exit 1; \
	done
	dpkg-deb --root-owner-group -Zxz --build $(DKMS_DEB_ROOT) \
	  $(ROOT)/userland/target/debian/vip-dkms_$(DKMS_VERSION)_all.deb >/dev/null

# The module's source for DKMS (dkms.conf at its top), as /usr/src/vip-VERSION.
DKMS_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' $(ROOT)/dkms.conf)
DKMS_SRC = $(DESTDIR)/usr/src/vip-$(DKMS_VERSION)
install-dkms:
	install -d $(DKMS_SRC)/vip_mod $(DKMS_SRC)/include/uapi/linux
	install -m 0644 $(ROOT)/dkms.conf $(ROOT)/Kbuild $(ROOT)/vip_mod.rs $(DKMS_SRC)/
	install -m 0644 $(filter-out %/bindings_generated.rs,$(wildcard $(ROOT)/vip_mod/*.rs)) \
	  $(ROOT)/vip_mod/*.c $(ROOT)/vip_mod/bindgen_parameters $(DKMS_SRC)/vip_mod/
	install -m 0644 $(ROOT)/include/*.h $(DKMS_SRC)/include/
	install -m 0644 $(ROOT)/include/uapi/linux/vip.h $(DKMS_SRC)/include/uapi/linux/

BIN := $(ROOT)/userland/target/release
install-userland: userland
	install -D -m 0755 $(BIN)/vipd $(DESTDIR)$(PREFIX)/sbin/vipd
	install -D -m 0755 $(BIN)/vipctl $(DESTDIR)$(PREFIX)/bin/vipctl
	install -d -m 0755 $(DESTDIR)/lib/systemd/system
	sed 's#/usr/sbin/#$(PREFIX)/sbin/#g' userland/vipd/dist/vipd.service > $(DESTDIR)/lib/systemd/system/vipd.service
	install -D -m 0644 userland/vipd/dist/vipd.toml $(DESTDIR)$(PREFIX)/share/doc/vip/vipd.toml.example
	install -m 0644 README.md docs/*.md $(DESTDIR)$(PREFIX)/share/doc/vip/
	[ -e $(DESTDIR)/etc/vipd/vipd.toml ] || install -D -m 0644 userland/vipd/dist/vipd.toml $(DESTDIR)/etc/vipd/vipd.toml
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man1
	$(BIN)/vipd --manpage | gzip -9n > $(DESTDIR)$(PREFIX)/share/man/man8/vipd.8.gz
	$(BIN)/vipctl manpage | gzip -9n > $(DESTDIR)$(PREFIX)/share/man/man1/vipctl.1.gz
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
	  $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN)/vipctl completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/vipctl
	$(BIN)/vipctl completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/vendor-completions/_vipctl
	$(BIN)/vipctl completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/vipctl.fish

# `make install DESTDIR=<scratch>` on the host, and the layout checked (tests/host/install.sh).
test-install: module userland
	$(ROOT)/tests/host/install.sh

lint: module
	cd userland && cargo fmt --check && cargo clippy --release --locked --all-targets -- -D warnings
	@kdir=$$($(VM)/build-kernel $(KERNEL)) && \
	  $(MAKE) -C $$kdir $(KARGS) CLIPPY=1 CLIPPY_DRIVER=/usr/bin/clippy-driver modules && \
	  rustfmt --check --config-path $$kdir/source/.rustfmt.toml vip_mod.rs

clean:
	@kdir=$$(ls -d $(VIP_CACHE)/kernel/$(KERNEL)-* 2>/dev/null | head -1); \
	  [ -z "$$kdir" ] || $(MAKE) -C $$kdir $(KARGS) clean
	rm -rf vip_mod/bindings_generated.rs .vip-kdir .vip-modules
	cd userland && cargo clean
