/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * VIP: a virtual IP layer for transparent host mobility.
 *
 * Userspace talks to the vip module over generic netlink, family VIP_GENL_NAME,
 * version VIP_GENL_VERSION. The family is per network namespace: every request
 * acts on the namespace of the socket that sends it.
 *
 * Commands
 * --------
 *
 * VIP_CMD_GET_VERSION: takes no attribute. Answers with one message:
 *
 *    VIP_A_VERSION: NLA_NUL_STRING, the module version ("MAJOR.MINOR.PATCH")
 *    VIP_A_GENL_VERSION: NLA_U32, the generic netlink protocol version the
 *                        module speaks (VIP_GENL_VERSION)
 *
 * Attributes that a command does not take are rejected with -EINVAL and an
 * extended ack message naming the attribute; so are attributes of the wrong
 * type or length.
 */

#ifndef _UAPI_LINUX_VIP_H
#define _UAPI_LINUX_VIP_H

#define VIP_GENL_NAME "vip"
#define VIP_GENL_VERSION 1

enum vip_cmd {
	VIP_CMD_UNSPEC,
	VIP_CMD_GET_VERSION,
	__VIP_CMD_MAX,
};
#define VIP_CMD_MAX (__VIP_CMD_MAX - 1)

enum vip_attr {
	VIP_A_UNSPEC,
	VIP_A_VERSION,
	VIP_A_GENL_VERSION,
	__VIP_A_MAX,
};
#define VIP_A_MAX (__VIP_A_MAX - 1)

#endif /* _UAPI_LINUX_VIP_H */
