// SPDX-License-Identifier: GPL-2.0
/*
 * One-line forwards to kernel static inline functions and macros, for Rust.
 * Nothing here makes a decision: see the Rust modules for that.
 */
#include <linux/module.h>

#include "vip_helpers.h"

struct sk_buff *vip_genlmsg_new(size_t payload, gfp_t flags)
{
	return genlmsg_new(payload, flags);
}

void *vip_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
			    const struct genl_family *family, int flags, u8 cmd)
{
	return genlmsg_put_reply(skb, info, family, flags, cmd);
}

void *vip_genlmsg_put_dump(struct sk_buff *skb, struct netlink_callback *cb,
			   const struct genl_family *family, u8 cmd)
{
	return genlmsg_put(skb, NETLINK_CB(cb->skb).portid, cb->nlh->nlmsg_seq,
			   family, NLM_F_MULTI, cmd);
}

void vip_genlmsg_end(struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
}

void vip_genlmsg_cancel(struct sk_buff *skb, void *hdr)
{
	genlmsg_cancel(skb, hdr);
}

int vip_genlmsg_reply(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_reply(skb, info);
}

void vip_nlmsg_free(struct sk_buff *skb)
{
	nlmsg_free(skb);
}

struct net *vip_genl_info_net(const struct genl_info *info)
{
	return genl_info_net(info);
}

struct net *vip_genl_dump_net(struct netlink_callback *cb)
{
	return sock_net(cb->skb->sk);
}

const struct genl_family *vip_genl_dump_family(struct netlink_callback *cb)
{
	return genl_info_dump(cb)->family;
}

struct nlattr **vip_genl_dump_attrs(struct netlink_callback *cb)
{
	return genl_info_dump(cb)->attrs;
}

/* NL_SET_ERR_MSG_ATTR without its copy of a literal: msg must be static. */
void vip_genl_set_err_msg(struct genl_info *info, const struct nlattr *attr,
			  const char *msg)
{
	if (info->extack) {
		info->extack->_msg = msg;
		info->extack->bad_attr = attr;
	}
}

void vip_genl_set_err_missing(struct genl_info *info, int attrtype)
{
	GENL_SET_ERR_MSG(info, "missing attribute");
	NL_SET_ERR_ATTR_MISS(info->extack, NULL, attrtype);
}

int vip_nla_put_u32(struct sk_buff *skb, int attrtype, u32 value)
{
	return nla_put_u32(skb, attrtype, value);
}

int vip_nla_put_u64(struct sk_buff *skb, int attrtype, u64 value, int padattr)
{
	return nla_put_u64_64bit(skb, attrtype, value, padattr);
}

int vip_nla_put_be32(struct sk_buff *skb, int attrtype, __be32 value)
{
	return nla_put_in_addr(skb, attrtype, value);
}

int vip_nla_put_string(struct sk_buff *skb, int attrtype, const char *str)
{
	return nla_put_string(skb, attrtype, str);
}

struct nlattr *vip_nla_nest_start(struct sk_buff *skb, int attrtype)
{
	return nla_nest_start(skb, attrtype);
}

void vip_nla_nest_end(struct sk_buff *skb, struct nlattr *start)
{
	nla_nest_end(skb, start);
}

u32 vip_nla_get_u32(const struct nlattr *nla)
{
	return nla_get_u32(nla);
}

__be32 vip_nla_get_be32(const struct nlattr *nla)
{
	return nla_get_in_addr(nla);
}

void *vip_net_generic(const struct net *net, unsigned int id)
{
	return net_generic(net, id);
}

/*
 * A host usually has a few peers, a server up to VIP_MAX_MAPPINGS_LIMIT: start
 * small, and never grow the bucket array (8 bytes a bucket, allocated by the
 * rhashtable's worker, so not charged to anyone's memory cgroup) past the
 * limit, as ILA bounds its table.
 */
static const struct rhashtable_params vip_table_params = {
	.nelem_hint = 16,
	.min_size = 16,
	.max_size = VIP_MAX_MAPPINGS_LIMIT,
	.key_len = sizeof(__be32),
	.key_offset = offsetof(struct vip_mapping, peer_vip),
	.head_offset = offsetof(struct vip_mapping, node),
	.automatic_shrinking = true,
};

int vip_table_init(struct rhashtable *ht)
{
	return rhashtable_init(ht, &vip_table_params);
}

void vip_table_destroy(struct rhashtable *ht, void (*free_fn)(void *ptr, void *arg))
{
	rhashtable_free_and_destroy(ht, free_fn, NULL);
}

struct vip_mapping *vip_table_lookup(struct rhashtable *ht, __be32 peer_vip)
{
	return rhashtable_lookup(ht, &peer_vip, vip_table_params);
}

int vip_table_insert(struct rhashtable *ht, struct vip_mapping *m)
{
	return rhashtable_lookup_insert_fast(ht, &m->node, vip_table_params);
}

int vip_table_replace(struct rhashtable *ht, struct vip_mapping *old, struct vip_mapping *new)
{
	return rhashtable_replace_fast(ht, &old->node, &new->node, vip_table_params);
}

int vip_table_remove(struct rhashtable *ht, struct vip_mapping *m)
{
	return rhashtable_remove_fast(ht, &m->node, vip_table_params);
}

unsigned int vip_table_count(struct rhashtable *ht)
{
	return atomic_read(&ht->nelems);
}

void vip_table_walk_start(struct rhashtable_iter *iter)
{
	rhashtable_walk_start(iter);
}

/* Mappings are charged to the creator's memory cgroup (with GFP_KERNEL_ACCOUNT too). */
struct kmem_cache *vip_mapping_cache_create(const char *name)
{
	return kmem_cache_create(name, sizeof(struct vip_mapping),
				 __alignof__(struct vip_mapping), SLAB_ACCOUNT, NULL);
}

void *vip_kmem_cache_zalloc(struct kmem_cache *cache, gfp_t flags)
{
	return kmem_cache_zalloc(cache, flags);
}

void vip_rcu_read_lock(void)
{
	rcu_read_lock();
}

void vip_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

unsigned long vip_jiffies(void)
{
	return READ_ONCE(jiffies);
}

void *vip_genlmsg_put_event(struct sk_buff *skb, const struct genl_family *family, u8 cmd)
{
	return genlmsg_put(skb, 0, 0, family, 0, cmd);
}

bool vip_genl_has_listeners(const struct genl_family *family, struct net *net, unsigned int group)
{
	return genl_has_listeners(family, net, group);
}

int vip_genlmsg_multicast_netns(const struct genl_family *family, struct net *net,
				struct sk_buff *skb, unsigned int group)
{
	return genlmsg_multicast_netns(family, net, skb, 0, group, GFP_ATOMIC);
}

void vip_ratelimit_init(struct ratelimit_state *rs, int interval, int burst)
{
	ratelimit_state_init(rs, interval, burst);
	ratelimit_set_flags(rs, RATELIMIT_MSG_ON_RELEASE);
}

bool vip_ratelimit(struct ratelimit_state *rs)
{
	return __ratelimit(rs);
}

/* As the net_ratelimit sysctl changes its state: ___ratelimit reads it once. */
void vip_ratelimit_set_burst(struct ratelimit_state *rs, int burst)
{
	WRITE_ONCE(rs->burst, burst);
}

int vip_ratelimit_burst(struct ratelimit_state *rs)
{
	return READ_ONCE(rs->burst);
}

struct iphdr *vip_ip_hdr(const struct sk_buff *skb)
{
	return ip_hdr(skb);
}

bool vip_pskb_network_may_pull(struct sk_buff *skb, unsigned int len)
{
	return pskb_network_may_pull(skb, len);
}

u32 vip_skb_get_hash(struct sk_buff *skb)
{
	return skb_get_hash(skb);
}

unsigned int vip_skb_dst_mtu(const struct sk_buff *skb)
{
	return skb_valid_dst(skb) ? dst_mtu(skb_dst(skb)) : 0;
}

struct xfrm_offload *vip_xfrm_offload(struct sk_buff *skb)
{
	return xfrm_offload(skb);
}

/*
 * The last association XFRM applied to a received packet, and the packet's
 * sequence number (XFRM_SKB_CB: set by xfrm_input() before decryption on every
 * path and left alone in transport mode); false without one. For an
 * xfrm4_protocol callback; roam.rs decides what to make of it.
 */
bool vip_xfrm_input_sa(struct sk_buff *skb, struct vip_esp_sa *sa)
{
	struct sec_path *sp = skb_sec_path(skb);
	struct xfrm_state *x;

	if (!sp || !sp->len)
		return false;
	x = sp->xvec[sp->len - 1];
	sa->net = xs_net(x);
	sa->family = x->props.family;
	sa->proto = x->id.proto;
	sa->mode = x->props.mode;
	sa->authenticates = x->aead || x->aalg;
	sa->spi = x->id.spi;
	sa->seq = ntohl(XFRM_SKB_CB(skb)->seq.input.low);
	sa->saddr = x->props.saddr.a4;
	sa->daddr = x->id.daddr.a4;
	sa->sel_family = x->sel.family;
	sa->sel_prefixlen_s = x->sel.prefixlen_s;
	sa->sel_prefixlen_d = x->sel.prefixlen_d;
	sa->sel_saddr = x->sel.saddr.a4;
	sa->sel_daddr = x->sel.daddr.a4;
	return true;
}

unsigned int vip_skb_network_offset_from_head(const struct sk_buff *skb)
{
	return skb_network_header(skb) - skb->head;
}

/* After the outer header was pulled: headers at the inner packet, as ip_tunnel_rcv. */
bool vip_skb_reset_inner(struct sk_buff *skb)
{
	skb_reset_network_header(skb);
	skb_reset_mac_header(skb);
	return pskb_inet_may_pull(skb);
}

int vip_ecn_decap_at(struct sk_buff *skb, unsigned int outer_offset)
{
	return IP_ECN_decapsulate((const struct iphdr *)(skb->head + outer_offset), skb);
}

void vip_skb_set_dev(struct sk_buff *skb, struct net_device *dev)
{
	skb->dev = dev;
}

void vip_kfree_skb(struct sk_buff *skb)
{
	kfree_skb(skb);
}

bool vip_skb_is_gso(const struct sk_buff *skb)
{
	return skb_is_gso(skb);
}

int vip_skb_cow_head(struct sk_buff *skb, unsigned int headroom)
{
	return skb_cow_head(skb, headroom);
}

void vip_skb_dst_update_pmtu(struct sk_buff *skb, u32 mtu)
{
	skb_dst_update_pmtu_no_confirm(skb, mtu);
}

void *vip_skb_pull_data(struct sk_buff *skb, unsigned int len)
{
	return __skb_pull(skb, len);
}

void *vip_skb_push_data(struct sk_buff *skb, unsigned int len)
{
	return __skb_push(skb, len);
}

void *vip_netdev_priv(const struct net_device *dev)
{
	return netdev_priv(dev);
}

struct net *vip_dev_net(const struct net_device *dev)
{
	return dev_net(dev);
}

struct rtable *vip_route_output(struct net *net, struct flowi4 *fl4, __be32 daddr, u8 tos,
				u32 mark, u32 inner_hash)
{
	ip_tunnel_init_flow(fl4, IPPROTO_IPIP, daddr, 0, 0, tos, net, 0, mark, inner_hash, 0);
	return ip_route_output_key(net, fl4);
}

unsigned int vip_rt_header_len(const struct rtable *rt)
{
	return rt->dst.header_len;
}

void vip_ip_rt_put(struct rtable *rt)
{
	ip_rt_put(rt);
}

struct net_device *vip_rt_dev(const struct rtable *rt)
{
	return rt->dst.dev;
}

unsigned int vip_rt_mtu(const struct rtable *rt)
{
	return dst_mtu(&rt->dst);
}

unsigned int vip_ll_reserved_space(const struct net_device *dev)
{
	return LL_RESERVED_SPACE(dev);
}

u8 vip_ecn_encap(u8 tos, const struct iphdr *inner, struct sk_buff *skb)
{
	return ip_tunnel_ecn_encap(tos, inner, skb);
}

void vip_icmp_frag_needed(struct sk_buff *skb, u32 mtu)
{
	icmp_ndo_send(skb, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, htonl(mtu));
}

void vip_netdev_set_lltx(struct net_device *dev)
{
	dev->lltx = true;
}

void vip_netdev_set_needs_free(struct net_device *dev)
{
	dev->needs_free_netdev = true;
}

void vip_netdev_set_netns_immutable(struct net_device *dev)
{
	dev->netns_immutable = true;
}

void vip_netif_keep_dst(struct net_device *dev)
{
	netif_keep_dst(dev);
}

void vip_netdev_set_tstats(struct net_device *dev)
{
	dev->pcpu_stat_type = NETDEV_PCPU_STAT_TSTATS;
}

void vip_netdev_add_priv_flags(struct net_device *dev, unsigned long long flags)
{
	dev->priv_flags |= flags;
}

__be16 vip_skb_protocol(const struct sk_buff *skb)
{
	return skb->protocol;
}

void vip_dev_tx_dropped(struct net_device *dev)
{
	DEV_STATS_INC(dev, tx_dropped);
}

void vip_dev_rx_dropped(struct net_device *dev)
{
	DEV_STATS_INC(dev, rx_dropped);
}

void vip_dev_rx_add(struct net_device *dev, unsigned int len)
{
	dev_sw_netstats_rx_add(dev, len);
}

unsigned short vip_dev_needed_headroom(const struct net_device *dev)
{
	return READ_ONCE(dev->needed_headroom);
}

void vip_dev_set_needed_headroom(struct net_device *dev, unsigned short headroom)
{
	WRITE_ONCE(dev->needed_headroom, headroom);
}

/* NL_SET_ERR_MSG without its copy of a literal: msg must be static. */
void vip_extack_set_msg(struct netlink_ext_ack *extack, const char *msg)
{
	if (extack)
		extack->_msg = msg;
}

void vip_cond_resched(void)
{
	cond_resched();
}

void vip_init_work(struct work_struct *work, work_func_t func)
{
	INIT_WORK(work, func);
}

bool vip_queue_work(struct work_struct *work)
{
	return schedule_work(work);
}

void vip_lock_sock(struct sock *sk)
{
	lock_sock(sk);
}

/*
 * The ESP callbacks (vip_mod/roam.rs) install the kernel's ESP protocol handler
 * if esp4 has not: have esp4 loaded first, so that ESP is never refused for
 * want of it.
 */
MODULE_SOFTDEP("pre: esp4");
