/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * VIP: a virtual IP layer for transparent host mobility.
 *
 * Userspace talks to the vip module over generic netlink, family VIP_GENL_NAME,
 * version VIP_GENL_VERSION. The family is per network namespace: every request
 * acts on the namespace of the socket that sends it.
 *
 * Every command but VIP_CMD_GET_VERSION needs CAP_NET_ADMIN in the user
 * namespace that owns the network namespace (-EPERM otherwise): mappings reveal
 * where every peer is, so reading them is as privileged as changing them. So
 * does joining the events group. Every command has its own attribute policy:
 * an attribute the command does not take, or one of the wrong type, length or
 * range, is refused with -EINVAL and an extended ack message that names it,
 * and nothing changes.
 *
 * Addresses (VIP_A_PEER_VIP, VIP_A_PEER_IP4, VIP_A_LOCAL_VIP) are IPv4
 * addresses in network byte order (NLA_BE32, like struct in_addr). Virtual IPs
 * are class-E addresses, 240.0.0.0/4, and never 255.255.255.255.
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
 * VIP_CMD_MAP_SET: creates or changes the mapping of one peer VIP. Takes
 *
 *    VIP_A_PEER_VIP: NLA_BE32, required: the peer's virtual IP, the key
 *    VIP_A_PEER_IP4: NLA_BE32, required: the peer's current physical IPv4
 *                    address, where packets to PEER_VIP are tunnelled and the
 *                    only outer source accepted for packets from PEER_VIP
 *    VIP_A_LOCAL_VIP: NLA_BE32, optional: our own virtual IP toward this peer
 *                     (0.0.0.0 or absent: none); must be a VIP too
 *    VIP_A_FLAGS: NLA_U32, optional: a mask of enum vip_map_flags
 *
 *    VIP_A_SET_FLAGS: NLA_U32, optional: a mask of enum vip_set_flags, what
 *                     the command may do, as NLM_F_CREATE and NLM_F_REPLACE do
 *                     for routes (generic netlink keeps those header flags
 *                     for itself): VIP_SET_F_CREATE creates a missing mapping,
 *                     VIP_SET_F_REPLACE changes an existing one. Absent:
 *                     VIP_SET_F_CREATE alone. A missing mapping without
 *                     CREATE is -ENOENT; an existing one without REPLACE is
 *                     -EEXIST. A change keeps the mapping's counters and
 *                     times: a peer that moved is the same peer.
 *
 *    A new mapping beyond the namespace's limit (VIP_A_MAX_MAPPINGS) is
 *    -ENOSPC. Mappings are charged to the memory cgroup of the process that
 *    creates them (-ENOMEM at its limit). A change of PEER_IP4 multicasts
 *    VIP_CMD_EVENT_MAPPING_CHANGED and makes the namespace's TCP sockets to
 *    PEER_VIP that wait in retransmission backoff (or for a SYN's answer)
 *    retransmit at once, with their backoff undone (counted in
 *    VIP_STAT_TCP_KICKS): their last tries went to the old address. Those
 *    with segments in flight whose timeout has not fired yet, and no ACK for
 *    two smoothed RTTs, send a loss probe at once where TCP would send one
 *    (SACK and RACK on, no recovery under way; VIP_STAT_TCP_PROBES): what
 *    they sent meanwhile was lost, and a full window of it would stall them
 *    until the timeout. If
 *    the old address is on one of our links and its neighbour entry is
 *    still unresolved, that entry is failed first (VIP_STAT_NEIGH_RELEASED),
 *    since TCP does not retransmit a segment whose last copy still waits in
 *    the host.
 *    VIP_SET_F_KICK does the same without a change.
 *
 * VIP_CMD_MAP_DEL: deletes the mapping of VIP_A_PEER_VIP (required);
 *    -ENOENT if there is none.
 *
 * VIP_CMD_MAP_GET: with VIP_A_PEER_VIP, answers with that mapping (or
 *    -ENOENT). As a dump (NLM_F_DUMP, no attribute), answers with every
 *    mapping, one message each, split across as many reads as it takes; a
 *    table resized during the dump may show a mapping twice. Each message has
 *
 *    VIP_A_PEER_VIP, VIP_A_PEER_IP4, VIP_A_FLAGS, and VIP_A_LOCAL_VIP when set
 *    VIP_A_RX_PACKETS, VIP_A_RX_BYTES, VIP_A_TX_PACKETS, VIP_A_TX_BYTES: NLA_U64
 *    VIP_A_LAST_RX_MSECS, VIP_A_LAST_TX_MSECS: NLA_U64, milliseconds since the
 *                        last packet from / to the peer; absent if none yet
 *
 * VIP_CMD_MAP_FLUSH: deletes every mapping. Takes no attribute; answers with
 *    VIP_A_COUNT: NLA_U32, how many mappings it deleted.
 *
 * VIP_CMD_GET_INFO: takes no attribute. Answers with the namespace's state:
 *
 *    VIP_A_COUNT: NLA_U32, mappings in the table
 *    VIP_A_MAX_MAPPINGS: NLA_U32, the namespace's limit on mappings
 *    VIP_A_ROAM_LIMIT: NLA_U32, the most roams (below) a second
 *    VIP_A_MAPPING_SIZE: NLA_U32, bytes the module allocates for one mapping
 *    VIP_A_STATS: NLA_NESTED, the namespace's counters (drops by reason,
 *                 events not sent, TCP sockets kicked): attributes of
 *                 enum vip_stat, each NLA_U64
 *
 * VIP_CMD_SET_CONFIG: changes the namespace's settings. Takes
 *
 *    VIP_A_MAX_MAPPINGS: NLA_U32, optional: the most mappings the namespace
 *                        may hold, 1 to VIP_MAX_MAPPINGS_LIMIT (default
 *                        VIP_MAX_MAPPINGS_DEFAULT). Lowering it below the
 *                        current count deletes nothing; new mappings are
 *                        refused until the count is below it.
 *    VIP_A_ROAM_LIMIT: NLA_U32, optional: the most mappings the namespace's
 *                      roams (below) may move in a second, 0 to
 *                      VIP_ROAM_LIMIT_MAX (default VIP_ROAM_LIMIT_DEFAULT);
 *                      0 turns roaming off.
 *
 * Events
 * ------
 *
 * The module multicasts events to the group VIP_GENL_MCGRP_EVENTS of the
 * namespace they happen in. The data path's events (NO_MAPPING, UNKNOWN,
 * MOVED) are hints for the daemon: anyone who can send packets can cause them.
 * Each of the three has its own budget of VIP_EVENT_BURST a second, so a flood
 * of one kind cannot starve the others, and the same event for the same
 * address is sent at most once a second; events over either limit are counted
 * in VIP_STAT_EVENTS_DROPPED. They are only sent for virtual IPs: a packet
 * whose addresses are not VIPs, or that carries IPIP inside, is dropped
 * without one.
 *
 * VIP_CMD_EVENT_NO_MAPPING: a packet was sent to a VIP without mapping.
 *    VIP_A_PEER_VIP: its destination
 *
 * VIP_CMD_EVENT_UNKNOWN: a packet came from a VIP without mapping.
 *    VIP_A_PEER_VIP: its (inner) source
 *    VIP_A_LOCAL_VIP: its (inner) destination
 *    VIP_A_SEEN_IP4: its outer source: where the sender's daemon can be told
 *
 * VIP_CMD_EVENT_MOVED: a packet from a mapped VIP came from another address
 *    than the mapping's. Never proof that the peer moved: check first.
 *    VIP_A_PEER_VIP: its (inner) source
 *    VIP_A_PEER_IP4: the address the mapping has
 *    VIP_A_SEEN_IP4: the address the packet came from
 *
 * VIP_CMD_EVENT_MAPPING_CHANGED: a VIP_CMD_MAP_SET, or a roam (below),
 *    changed where a peer is (the paper's callOnChange). Not rate-limited:
 *    only administrators and authenticated packets cause it.
 *    VIP_A_PEER_VIP: the peer
 *    VIP_A_OLD_IP4: the address it had
 *    VIP_A_PEER_IP4: the address it has now
 *
 * VIP_CMD_EVENT_ROAMED: the module itself moved a peer's mapping to the
 *    source of an authenticated packet (below); sent before MAPPING_CHANGED.
 *    Same attributes as MAPPING_CHANGED.
 *
 * Roaming on authenticated ESP
 * ----------------------------
 *
 * A packet from a mapped peer that arrives from another address is dropped
 * (VIP_STAT_RX_MOVED), unless it is a whole ESP packet on the security
 * association the peer's mapped address uses, with a sequence number after
 * any seen from that address (VIP_STAT_RX_ROAM_CANDIDATES). Such a packet goes
 * on to the kernel's IPsec, and if IPsec authenticates it (transport mode, an
 * association that authenticates, with a selector of exactly the two VIPs),
 * the mapping moves to the address it came from, as WireGuard's endpoints
 * roam: counted in VIP_STAT_ROAMS, with the events above, and TCP toward the
 * peer kicked as for VIP_CMD_MAP_SET; a VIP_CMD_MAP_SET in between wins. A
 * packet from the mapped address with that sequence number or a later one, or
 * on another association, before the authentication voids the move, and so
 * does IPsec refusing it. Nothing moves without an authenticated packet: a
 * plaintext packet, a forged or replayed one, or one on another association
 * moves nothing. The esp4 module is loaded before this one.
 *
 * Each roam copies a mapping and walks the namespace's TCP sockets, and an
 * attacker on the path can make one from each fresh packet of a peer (by
 * delivering a copy of it from elsewhere first), so roams have a budget of
 * VIP_A_ROAM_LIMIT a second per namespace; a move over it is not made
 * (VIP_STAT_ROAMS_DROPPED) and left to the daemon, and the packet from the new
 * address is still delivered if IPsec authenticates it. With the limit 0,
 * packets from another address are dropped as before roaming (no candidates).
 */

#ifndef _UAPI_LINUX_VIP_H
#define _UAPI_LINUX_VIP_H

#define VIP_GENL_NAME "vip"
#define VIP_GENL_VERSION 1
#define VIP_GENL_MCGRP_EVENTS "events"
#define VIP_EVENT_BURST 100
#define VIP_MAX_MAPPINGS_DEFAULT (1U << 20)
#define VIP_ROAM_LIMIT_DEFAULT 100
#define VIP_ROAM_LIMIT_MAX 100000
#define VIP_MAX_MAPPINGS_LIMIT (1U << 22)

enum vip_cmd {
	VIP_CMD_UNSPEC,
	VIP_CMD_GET_VERSION,
	VIP_CMD_MAP_SET,
	VIP_CMD_MAP_DEL,
	VIP_CMD_MAP_GET,
	VIP_CMD_MAP_FLUSH,
	VIP_CMD_GET_INFO,
	VIP_CMD_EVENT_NO_MAPPING,
	VIP_CMD_EVENT_UNKNOWN,
	VIP_CMD_EVENT_MOVED,
	VIP_CMD_SET_CONFIG,
	VIP_CMD_EVENT_MAPPING_CHANGED,
	VIP_CMD_EVENT_ROAMED,
	__VIP_CMD_MAX,
};
#define VIP_CMD_MAX (__VIP_CMD_MAX - 1)

enum vip_attr {
	VIP_A_UNSPEC,
	VIP_A_VERSION,
	VIP_A_GENL_VERSION,
	VIP_A_PEER_VIP,
	VIP_A_PEER_IP4,
	VIP_A_LOCAL_VIP,
	VIP_A_FLAGS,
	VIP_A_RX_PACKETS,
	VIP_A_RX_BYTES,
	VIP_A_TX_PACKETS,
	VIP_A_TX_BYTES,
	VIP_A_LAST_RX_MSECS,
	VIP_A_LAST_TX_MSECS,
	VIP_A_COUNT,
	VIP_A_MAPPING_SIZE,
	VIP_A_PAD,
	VIP_A_SET_FLAGS,
	VIP_A_SEEN_IP4,
	VIP_A_STATS,
	VIP_A_MAX_MAPPINGS,
	VIP_A_OLD_IP4,
	VIP_A_ROAM_LIMIT,
	__VIP_A_MAX,
};
#define VIP_A_MAX (__VIP_A_MAX - 1)

/* Per-namespace counters (VIP_A_STATS): mostly why packets were dropped. */
enum vip_stat {
	VIP_STAT_UNSPEC,
	VIP_STAT_TX_MALFORMED,		/* not IPv4, or truncated */
	VIP_STAT_TX_NO_MAPPING,		/* to a VIP without mapping */
	VIP_STAT_TX_INVALID,		/* to a VIP whose mapping is invalid */
	VIP_STAT_TX_NO_ROUTE,		/* no route to the peer's address */
	VIP_STAT_TX_LOOP,		/* that route leads back into vip */
	VIP_STAT_TX_TOO_BIG,		/* DF and over the path MTU */
	VIP_STAT_TX_ERROR,		/* encapsulation failed */
	VIP_STAT_RX_MALFORMED,		/* broken inner header */
	VIP_STAT_RX_UNKNOWN,		/* from a VIP without mapping */
	VIP_STAT_RX_MOVED,		/* from a VIP, not from its address */
	VIP_STAT_RX_INVALID,		/* from a VIP whose mapping is invalid */
	VIP_STAT_RX_WRONG_LOCAL,	/* not to the agreed local VIP */
	VIP_STAT_RX_NO_DEVICE,		/* no vip device to deliver to */
	VIP_STAT_EVENTS_DROPPED,	/* events over a limit, or no memory */
	VIP_STAT_PAD,			/* alignment padding, no value */
	VIP_STAT_RX_CONNTRACK,		/* conntrack refused the outer packet */
	VIP_STAT_TCP_KICKS,		/* TCP sockets told to retransmit now */
	VIP_STAT_NEIGH_RELEASED,	/* packets waiting for a left address freed */
	VIP_STAT_TX_XFRM_PENDING,	/* ESP not yet applied by the offload path */
	VIP_STAT_TCP_PROBES,		/* TCP sockets told to send a loss probe now */
	VIP_STAT_RX_ROAM_CANDIDATES,	/* ESP from elsewhere let through to be authenticated */
	VIP_STAT_ROAMS,			/* mappings moved by an authenticated packet */
	VIP_STAT_ROAMS_DROPPED,		/* such moves not made: over the roam limit, or too many at once */
	__VIP_STAT_MAX,
};

enum vip_map_flags {
	/* Renegotiation failed: packets to or from this VIP are dropped, and
	 * the VIP is not reused until garbage collection (paper, section 3.1). */
	VIP_MAP_F_INVALID = 1U << 0,
	/* Installed on a hint or during negotiation, not yet confirmed. */
	VIP_MAP_F_TEMPORARY = 1U << 1,
	__VIP_MAP_F_ALL = VIP_MAP_F_INVALID | VIP_MAP_F_TEMPORARY,
};

enum vip_set_flags {
	VIP_SET_F_CREATE = 1U << 0,
	VIP_SET_F_REPLACE = 1U << 1,
	/* Kick the TCP sockets to PEER_VIP even if PEER_IP4 did not change: the
	 * daemon knows the path just came back (the peer acknowledged our move). */
	VIP_SET_F_KICK = 1U << 2,
	__VIP_SET_F_ALL = VIP_SET_F_CREATE | VIP_SET_F_REPLACE | VIP_SET_F_KICK,
};

#endif /* _UAPI_LINUX_VIP_H */
