// SPDX-License-Identifier: GPL-2.0
/*
 * One-line forwards to kernel static inline functions and macros, for Rust.
 * Nothing here makes a decision: see the Rust modules for that.
 */
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

static const struct rhashtable_params vip_table_params = {
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

struct kmem_cache *vip_kmem_cache_create(const char *name, unsigned int size)
{
	return kmem_cache_create(name, size, 0, 0, NULL);
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
