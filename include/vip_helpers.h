/* SPDX-License-Identifier: GPL-2.0 */
/*
 * C wrappers for kernel static inline functions and macros that Rust cannot
 * call directly. Each is a one-line forward; the logic lives in Rust.
 */
#ifndef _VIP_HELPERS_H
#define _VIP_HELPERS_H

#include <linux/skbuff.h>
#include <net/genetlink.h>

struct sk_buff *vip_genlmsg_new(size_t payload, gfp_t flags);
void *vip_genlmsg_put_reply(struct sk_buff *skb, struct genl_info *info,
			    const struct genl_family *family, int flags, u8 cmd);
void vip_genlmsg_end(struct sk_buff *skb, void *hdr);
int vip_genlmsg_reply(struct sk_buff *skb, struct genl_info *info);
void vip_nlmsg_free(struct sk_buff *skb);
int vip_nla_put_u32(struct sk_buff *skb, int attrtype, u32 value);
int vip_nla_put_string(struct sk_buff *skb, int attrtype, const char *str);

#endif /* _VIP_HELPERS_H */
