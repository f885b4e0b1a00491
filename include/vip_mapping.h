/* SPDX-License-Identifier: GPL-2.0 */
/*
 * One entry of the VIP->IP mapping table. Declared in C because the table is a
 * kernel rhashtable, whose fast paths are static inline functions specialised
 * on compile-time parameters (key and node offsets) of this struct; the Rust
 * side (vip_mod/table.rs) owns all the logic.
 */
#ifndef _VIP_MAPPING_H
#define _VIP_MAPPING_H

#include <linux/cache.h>
#include <linux/in6.h>
#include <linux/rhashtable-types.h>
#include <linux/types.h>

/* Where a peer is now. AF_INET only so far; the union leaves room for AF_INET6. */
struct vip_endpoint {
	u16 family;
	u16 reserved;
	union {
		__be32 ip4;
		struct in6_addr ip6;
	};
};

/*
 * What the data path counts for a mapping. The counters and times are updated
 * with relaxed atomics on every packet, so they live on their own cache line:
 * lookups, which walk hash chains on every CPU, only ever read the first line.
 */
struct vip_counters {
	u64 rx_packets;
	u64 rx_bytes;
	u64 tx_packets;
	u64 tx_bytes;
	unsigned long last_rx;		/* jiffies; 0: never */
	unsigned long last_tx;
};

/*
 * What the receive path learns of the peer's ESP, for roaming on authenticated
 * packets (vip_mod/roam.rs). Written with atomics on every ESP packet, like the
 * counters, on the same line; a copy that VIP_CMD_MAP_SET makes for another
 * address starts afresh, one for the same address keeps it, and one made by a
 * roam goes on from the packet that moved it.
 */
struct vip_roam {
	u64 esp_seen;	/* from the mapped address: SPI << 32 | highest sequence number */
	u64 candidate;	/* from elsewhere: source address << 32 | sequence number; 0: none */
};

/*
 * Mappings are never changed in place: a change publishes a new copy and frees
 * the old one after a grace period, so readers always see a consistent entry.
 * The first cache line is written only before the mapping is published.
 */
struct vip_mapping {
	struct rhash_head node;
	__be32 peer_vip;		/* the key */
	__be32 local_vip;		/* 0: none */
	struct vip_endpoint peer;
	u32 flags;			/* enum vip_map_flags */
	struct rcu_head rcu;
	struct vip_counters counters ____cacheline_aligned;
	struct vip_roam roam;
};

#endif /* _VIP_MAPPING_H */
