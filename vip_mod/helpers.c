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

void vip_genlmsg_end(struct sk_buff *skb, void *hdr)
{
	genlmsg_end(skb, hdr);
}

int vip_genlmsg_reply(struct sk_buff *skb, struct genl_info *info)
{
	return genlmsg_reply(skb, info);
}

void vip_nlmsg_free(struct sk_buff *skb)
{
	nlmsg_free(skb);
}

int vip_nla_put_u32(struct sk_buff *skb, int attrtype, u32 value)
{
	return nla_put_u32(skb, attrtype, value);
}

int vip_nla_put_string(struct sk_buff *skb, int attrtype, const char *str)
{
	return nla_put_string(skb, attrtype, str);
}

