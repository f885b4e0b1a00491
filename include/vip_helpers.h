/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C wrappers for kernel static inline functions and macros that Rust cannot
 * call directly. Each is a one-line forward; the logic lives in Rust.
 */
#ifndef _VIP_HELPERS_H
#define _VIP_HELPERS_H

#include <linux/rhashtable.h>
#include <linux/skbuff.h>
#include <linux/slab.h>
#include <net/genetlink.h>
#include <net/net_namespace.h>
#include <net/netns/generic.h>
#include <net/sock.h>

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

/* slab cache and RCU */
struct kmem_cache *vip_kmem_cache_create(const char *name, unsigned int size);
void *vip_kmem_cache_zalloc(struct kmem_cache *cache, gfp_t flags);
void vip_rcu_read_lock(void);
void vip_rcu_read_unlock(void);
unsigned long vip_jiffies(void);

#endif /* _VIP_HELPERS_H */
