/* SPDX-License-Identifier: GPL-2.0 */
/*
 * What the vip module binds to with bindgen: kernel APIs that the 6.12
 * `bindings` crate lacks, our UAPI, and our C helpers for static inline
 * functions and macros (vip_mod/helpers.c).
 */
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <net/genetlink.h>
#include <net/netlink.h>
#include <net/net_namespace.h>
#include <net/gro_cells.h>
#include <net/route.h>

#include <uapi/linux/vip.h>
#include "vip_helpers.h"

/* Values that bindgen cannot evaluate from their macros. */
const size_t VIP_NLMSG_GOODSIZE = NLMSG_GOODSIZE;
/* What the kernel's ipip device offers (IPIP_FEATURES in net/ipv4/ipip.c). */
const netdev_features_t VIP_NETDEV_FEATURES = NETIF_F_SG | NETIF_F_FRAGLIST |
	NETIF_F_HIGHDMA | NETIF_F_GSO_SOFTWARE | NETIF_F_HW_CSUM;
const int VIP_SKB_GSO_IPXIP4 = SKB_GSO_IPXIP4;
const unsigned int VIP_HZ = HZ;
const gfp_t VIP_GFP_ACCOUNT = GFP_KERNEL_ACCOUNT;
const u8 VIP_GENL_MCAST_CAP_NET_ADMIN = GENL_MCAST_CAP_NET_ADMIN;
/* struct xfrm_offload's flag for packets that GRO received and decrypted. */
const u32 VIP_XFRM_GRO = XFRM_GRO;
