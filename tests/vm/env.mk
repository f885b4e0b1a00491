# The settings of env.sh, for make.
VIP_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/vip
VIP_RUSTC := /usr/bin/rustc
VIP_LLVM := -19
VIP_BINDGEN := $(VIP_CACHE)/tools/bin/bindgen
