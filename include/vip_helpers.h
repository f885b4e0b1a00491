/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C wrappers for kernel static inline functions and macros that Rust cannot
 * call directly. Each is a one-line forward; the logic lives in Rust.
 */
#ifndef _VIP_HELPERS_H
#define _VIP_HELPERS_H

#include <linux/icmp.h>
#include <linux/ip.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/ratelimit.h>
#include <linux/rhashtable.h>
#include <net/dst_metadata.h>
#include <net/icmp.h>
#include <net/inet_ecn.h>
#include <net/ip_tunnels.h>
#include <net/route.h>
#include <net/rtnetlink.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include <net/gso.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>
#include <net/xfrm.h>
#include <linux/workqueue.h>
#include <uapi/linux/vip.h>

#include "vip_mapping.h"

/* generic netlink messages */
struct sk_buff *vip_genlmsg_new(size_t payload, gfp_t flags);
void *vip_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
			    const struct genl_family *family, int flags, u8 cmd);
void *vip_genlmsg_put_dump(struct sk_buff *skb, struct netlink_callback *cb,
			   const struct genl_family *family, u8 cmd);
void vip_genlmsg_end(struct sk_buff *skb, void *hdr);
void vip_genlmsg_cancel(struct sk_buff *skb, void *hdr);
int vip_genlmsg_reply(struct sk_buff *skb, struct genl_info *info);
void vip_nlmsg_free(struct sk_buff *skb);
struct net *vip_genl_info_net(const struct genl_info *info);
struct net *vip_genl_dump_net(struct netlink_callback *cb);
const struct genl_family *vip_genl_dump_family(struct netlink_callback *cb);
struct nlattr **vip_genl_dump_attrs(struct netlink_callback *cb);
void vip_genl_set_err_msg(struct genl_info *info, const struct nlattr *attr,
			  const char *msg);
void vip_genl_set_err_missing(struct genl_info *info, int attrtype);

/* netlink attributes */
int vip_nla_put_u32(struct sk_buff *skb, int attrtype, u32 value);
int vip_nla_put_u64(struct sk_buff *skb, int attrtype, u64 value, int padattr);
int vip_nla_put_be32(struct sk_buff *skb, int attrtype, __be32 value);
int vip_nla_put_string(struct sk_buff *skb, int attrtype, const char *str);
struct nlattr *vip_nla_nest_start(struct sk_buff *skb, int attrtype);
void vip_nla_nest_end(struct sk_buff *skb, struct nlattr *start);
u32 vip_nla_get_u32(const struct nlattr *nla);
__be32 vip_nla_get_be32(const struct nlattr *nla);

/* per-namespace storage */
void *vip_net_generic(const struct net *net, unsigned int id);

/* the mapping table: rhashtable keyed on vip_mapping.peer_vip */
int vip_table_init(struct rhashtable *ht);
void vip_table_destroy(struct rhashtable *ht, void (*free_fn)(void *ptr, void *arg));
struct vip_mapping *vip_table_lookup(struct rhashtable *ht, __be32 peer_vip);
int vip_table_insert(struct rhashtable *ht, struct vip_mapping *m);
int vip_table_replace(struct rhashtable *ht, struct vip_mapping *old, struct vip_mapping *new);
int vip_table_remove(struct rhashtable *ht, struct vip_mapping *m);
unsigned int vip_table_count(struct rhashtable *ht);
void vip_table_walk_start(struct rhashtable_iter *iter);

/* slab cache, RCU, scheduling, work */
struct kmem_cache *vip_mapping_cache_create(const char *name);
void *vip_kmem_cache_zalloc(struct kmem_cache *cache, gfp_t flags);
void vip_rcu_read_lock(void);
void vip_rcu_read_unlock(void);
unsigned long vip_jiffies(void);
void vip_cond_resched(void);
void vip_init_work(struct work_struct *work, work_func_t func);
bool vip_queue_work(struct work_struct *work);

/* generic netlink events */
void *vip_genlmsg_put_event(struct sk_buff *skb, const struct genl_family *family, u8 cmd);
bool vip_genl_has_listeners(const struct genl_family *family, struct net *net, unsigned int group);
int vip_genlmsg_multicast_netns(const struct genl_family *family, struct net *net,
				struct sk_buff *skb, unsigned int group);
void vip_ratelimit_init(struct ratelimit_state *rs, int interval, int burst);
bool vip_ratelimit(struct ratelimit_state *rs);
void vip_ratelimit_set_burst(struct ratelimit_state *rs, int burst);
int vip_ratelimit_burst(struct ratelimit_state *rs);

/* socket buffers */
struct iphdr *vip_ip_hdr(const struct sk_buff *skb);
bool vip_pskb_network_may_pull(struct sk_buff *skb, unsigned int len);
u32 vip_skb_get_hash(struct sk_buff *skb);
unsigned int vip_skb_dst_mtu(const struct sk_buff *skb);
struct xfrm_offload *vip_xfrm_offload(struct sk_buff *skb);

/* The association XFRM last applied to a received packet (vip_mod/roam.rs). */
struct vip_esp_sa {
	struct net *net;
	u16 family;
	u8 proto;
	u8 mode;
	bool authenticates;	/* AEAD or an authentication algorithm */
	__be32 spi;
	u32 seq;		/* the packet's sequence number, low 32 bits, host order */
	__be32 saddr;		/* the association's addresses: the peer's VIP ... */
	__be32 daddr;		/* ... and ours */
	u16 sel_family;		/* its selector */
	u8 sel_prefixlen_s;
	u8 sel_prefixlen_d;
	__be32 sel_saddr;
	__be32 sel_daddr;
};
bool vip_xfrm_input_sa(struct sk_buff *skb, struct vip_esp_sa *sa);
unsigned int vip_skb_network_offset_from_head(const struct sk_buff *skb);
bool vip_skb_reset_inner(struct sk_buff *skb);
int vip_ecn_decap_at(struct sk_buff *skb, unsigned int outer_offset);
void vip_skb_set_dev(struct sk_buff *skb, struct net_device *dev);
void vip_kfree_skb(struct sk_buff *skb);
bool vip_skb_is_gso(const struct sk_buff *skb);
int vip_skb_cow_head(struct sk_buff *skb, unsigned int headroom);
void vip_skb_dst_update_pmtu(struct sk_buff *skb, u32 mtu);
struct net *vip_dev_net(const struct net_device *dev);
void *vip_netdev_priv(const struct net_device *dev);
void *vip_skb_pull_data(struct sk_buff *skb, unsigned int len);
void *vip_skb_push_data(struct sk_buff *skb, unsigned int len);

/* routing and tunnelling */
struct rtable *vip_route_output(struct net *net, struct flowi4 *fl4, __be32 daddr, u8 tos,
				u32 mark, u32 inner_hash);
unsigned int vip_rt_header_len(const struct rtable *rt);
void vip_ip_rt_put(struct rtable *rt);
struct net_device *vip_rt_dev(const struct rtable *rt);
unsigned int vip_rt_mtu(const struct rtable *rt);
unsigned int vip_ll_reserved_space(const struct net_device *dev);
u8 vip_ecn_encap(u8 tos, const struct iphdr *inner, struct sk_buff *skb);
void vip_icmp_frag_needed(struct sk_buff *skb, u32 mtu);

/* net_device fields behind struct groups and bitfields */
void vip_netdev_set_lltx(struct net_device *dev);
void vip_netdev_set_needs_free(struct net_device *dev);
void vip_netdev_set_netns_immutable(struct net_device *dev);
void vip_netif_keep_dst(struct net_device *dev);
void vip_netdev_set_tstats(struct net_device *dev);
void vip_netdev_add_priv_flags(struct net_device *dev, unsigned long long flags);
__be16 vip_skb_protocol(const struct sk_buff *skb);

/* device statistics */
void vip_dev_tx_dropped(struct net_device *dev);
void vip_dev_rx_dropped(struct net_device *dev);
void vip_dev_rx_add(struct net_device *dev, unsigned int len);
unsigned short vip_dev_needed_headroom(const struct net_device *dev);
void vip_dev_set_needed_headroom(struct net_device *dev, unsigned short headroom);
void vip_extack_set_msg(struct netlink_ext_ack *extack, const char *msg);

/* sockets */
void vip_lock_sock(struct sock *sk);

/* glue.c: logic that kernel macros force into C */
unsigned int vip_confirm_conntrack(struct sk_buff *skb);
unsigned int vip_tcp_collect(struct net *net, unsigned int *bucket, unsigned int *skip,
			     bool (*wanted)(const void *ctx, __be32 daddr), const void *ctx,
			     struct sock **socks, unsigned int max);
bool vip_tcp_walk_done(struct net *net, unsigned int bucket);
/* What vip_tcp_kick did. */
enum vip_kick {
	VIP_KICK_NONE,
	VIP_KICK_RETRANSMIT,
	VIP_KICK_PROBE,
};
int vip_tcp_kick(struct sock *sk);
bool vip_neigh_release(struct net *net, __be32 addr);

#endif /* _VIP_HELPERS_H */
