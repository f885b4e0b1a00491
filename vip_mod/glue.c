// SPDX-License-Identifier: GPL-2.0
/*
 * The little logic that kernel macros and internal structures force into C.
 * Everything else, including every decision these functions' callers take on
 * their results, is in the Rust modules (receive.rs, kick.rs).
 *
 * 1. Confirming the outer packet's conntrack entry (receive.rs). Our LOCAL_IN
 *    hook steals VIP packets before conntrack's own confirm hook runs, so an
 *    outer flow's entry would never be confirmed: every packet would allocate
 *    one and free it again, and INPUT rules would see every outer packet as
 *    NEW. The kernel's IPIP handler runs after that hook, so we confirm here,
 *    through nf_ct_hook (as br_netfilter's br_nf_local_in does) rather than
 *    nf_conntrack_confirm(), which would make vip.ko depend on nf_conntrack.
 *
 * 2. Walking the TCP established hash (kick.rs): the buckets are walked with
 *    sk_nulls_for_each under the bucket's lock, as inet_diag does, and the
 *    sockets found are handed back with a reference held.
 *
 * 3. Restarting a socket's retransmission timer with its backoff undone, or
 *    arming its loss probe to fire now: the RTO arithmetic (__tcp_set_rto,
 *    inet_csk_reset_xmit_timer) is all static inline, and tcp_ld_RTO_revert,
 *    which does the same for RFC 6069, is not exported to modules when IPv6 is
 *    built in.
 *
 * 4. Releasing what waits for a peer's old address (kick.rs): neighbour
 *    entries and their states are reached through static inlines only.
 */
#include "vip_helpers.h"

#include <linux/netfilter.h>
#include <net/inet_connection_sock.h>
#include <net/inet_hashtables.h>
#include <net/neighbour.h>
#include <net/arp.h>
#include <net/route.h>
#include <net/netfilter/nf_conntrack.h>
#include <net/tcp.h>

/* Returns an NF_ verdict: NF_ACCEPT unless conntrack refused the entry. */
unsigned int vip_confirm_conntrack(struct sk_buff *skb)
{
	struct nf_conntrack *nfct = skb_nfct(skb);
	const struct nf_ct_hook *ct_hook;

	if (!nfct || nf_ct_is_confirmed(container_of(nfct, struct nf_conn, ct_general)))
		return NF_ACCEPT;
	/* A clone shares the entry: leave it to whoever confirms the other copy. */
	if (refcount_read(&nfct->use) != 1) {
		nf_reset_ct(skb);
		return NF_ACCEPT;
	}
	ct_hook = rcu_dereference(nf_ct_hook);
	if (!ct_hook) {
		nf_reset_ct(skb);
		return NF_ACCEPT;
	}
	return ct_hook->confirm(skb) & NF_VERDICT_MASK;
}

/*
 * Collects up to @max full TCP sockets of @net, from the established hash,
 * whose peer address @wanted accepts, starting at bucket *@bucket and, within
 * it, after *@skip matching sockets (the position a previous call stopped at).
 * Looks at most at VIP_TCP_BUCKETS_PER_CALL buckets, so that the caller can
 * reschedule between calls. Each socket comes with a reference the caller
 * drops with sock_gen_put(). Returns how many it collected; the walk is over
 * when vip_tcp_walk_done() says so. A bucket's lock is held only while
 * collecting from it.
 */
#define VIP_TCP_BUCKETS_PER_CALL 4096
unsigned int vip_tcp_collect(struct net *net, unsigned int *bucket, unsigned int *skip,
			     bool (*wanted)(const void *ctx, __be32 daddr), const void *ctx,
			     struct sock **socks, unsigned int max)
{
	struct inet_hashinfo *hashinfo = net->ipv4.tcp_death_row.hashinfo;
	unsigned int end = *bucket + VIP_TCP_BUCKETS_PER_CALL;
	unsigned int n = 0;

	for (; *bucket <= hashinfo->ehash_mask && *bucket < end; (*bucket)++, *skip = 0) {
		struct inet_ehash_bucket *head = &hashinfo->ehash[*bucket];
		spinlock_t *lock = inet_ehash_lockp(hashinfo, *bucket);
		struct hlist_nulls_node *node;
		unsigned int seen = 0;
		struct sock *sk;

		if (hlist_nulls_empty(&head->chain))
			continue;
		spin_lock_bh(lock);
		sk_nulls_for_each(sk, node, &head->chain) {
			/* Time-wait and request sockets have no retransmission queue. */
			if (!net_eq(sock_net(sk), net) || sk->sk_state == TCP_TIME_WAIT ||
			    sk->sk_state == TCP_NEW_SYN_RECV || !wanted(ctx, sk->sk_daddr))
				continue;
			if (seen++ < *skip)
				continue;
			if (!refcount_inc_not_zero(&sk->sk_refcnt))
				continue;
			socks[n++] = sk;
			if (n == max)
				break;
		}
		spin_unlock_bh(lock);
		if (n == max) {
			/* Resume in this bucket, after what was seen. */
			*skip = seen;
			return n;
		}
	}
	return n;
}

/* Whether a walk that got to @bucket is over. */
bool vip_tcp_walk_done(struct net *net, unsigned int bucket)
{
	return bucket > net->ipv4.tcp_death_row.hashinfo->ehash_mask;
}

/*
 * Whether TCP itself would send @sk a tail loss probe now, but for the one it
 * sent already: the conditions of tcp_schedule_loss_probe (loss probes and
 * RACK on, SACK, no recovery under way; neither a Fast Open request nor
 * repair mode, whose timers differ), and no ACK for a probe timeout (two
 * smoothed RTTs): a connection whose ACKs still arrive is left alone.
 */
static bool vip_tcp_probe_due(struct sock *sk)
{
	struct inet_connection_sock *icsk = inet_csk(sk);
	struct tcp_sock *tp = tcp_sk(sk);
	struct net *net = sock_net(sk);
	u8 early_retrans = READ_ONCE(net->ipv4.sysctl_tcp_early_retrans);

	if (!((1 << sk->sk_state) & (TCPF_ESTABLISHED | TCPF_FIN_WAIT1 | TCPF_CLOSE_WAIT |
				     TCPF_CLOSING | TCPF_LAST_ACK)) ||
	    !tp->packets_out || tp->repair || rcu_access_pointer(tp->fastopen_rsk))
		return false;
	if ((early_retrans != 3 && early_retrans != 4) || !tcp_is_sack(tp) ||
	    !(READ_ONCE(net->ipv4.sysctl_tcp_recovery) & TCP_RACK_LOSS_DETECTION))
		return false;
	if (icsk->icsk_ca_state != TCP_CA_Open && icsk->icsk_ca_state != TCP_CA_CWR)
		return false;
	return (s32)(tcp_jiffies32 - tp->rcv_tstamp) >=
	       (s32)usecs_to_jiffies(max_t(u32, tp->srtt_us >> 2, 1));
}

/*
 * Has @sk, whose peer was just re-pointed (or whose peer's ack shows that it
 * follows us again), send at once what a timer would send later; the caller
 * holds the socket lock (lock_sock), which defers the timer handler to
 * release_sock() if it fires meanwhile. Returns what it did:
 *
 * VIP_KICK_RETRANSMIT: the socket waits out a retransmission timeout that
 *   has already fired at least once (or for the answer to a SYN): its last
 *   tries went to an address the peer has left. The backoff is undone and the
 *   timeout fires now (RFC 6069's tcp_ld_RTO_revert undoes one step of it and
 *   keeps the time elapsed; the peer did not merely come back, it moved).
 *
 * VIP_KICK_PROBE: it has segments in flight, no timeout has fired or is due
 *   yet, and no ACK came for a probe timeout (vip_tcp_probe_due). Those sent
 *   while the peer was unreachable are lost, and so was the tail loss probe
 *   TCP sent meanwhile (tlp_high_seq allows one a flight), so a sender whose
 *   window is full of them would wait for the whole timeout. A loss probe
 *   goes now instead (new data, or the last segment again), as
 *   tcp_write_timer_handler sends it: the peer's SACK for it lets RACK repair
 *   the rest within a round trip, with fast recovery's congestion response
 *   rather than a timeout's. A probe into a path that is still dead restarts
 *   the timeout, as TCP's own probe does: each re-point can cost the socket up
 *   to one more timeout.
 *
 * VIP_KICK_NONE otherwise.
 */
int vip_tcp_kick(struct sock *sk)
{
	struct inet_connection_sock *icsk = inet_csk(sk);
	struct tcp_sock *tp = tcp_sk(sk);

	if (sk->sk_state == TCP_CLOSE || sk->sk_state == TCP_LISTEN)
		return VIP_KICK_NONE;
	if (icsk->icsk_pending == ICSK_TIME_RETRANS &&
	    (sk->sk_state == TCP_SYN_SENT || icsk->icsk_retransmits)) {
		icsk->icsk_backoff = 0;
		icsk->icsk_rto = min_t(u32, tp->srtt_us ? __tcp_set_rto(tp) : TCP_TIMEOUT_INIT,
				       TCP_RTO_MAX);
		inet_csk_reset_xmit_timer(sk, ICSK_TIME_RETRANS, 0, TCP_RTO_MAX);
		return VIP_KICK_RETRANSMIT;
	}
	/* A timeout that is due (its handler perhaps deferred to release_sock())
	 * is left to fire as it is. */
	if (icsk->icsk_pending == ICSK_TIME_RETRANS &&
	    !time_before(jiffies, icsk->icsk_timeout))
		return VIP_KICK_NONE;
	if ((icsk->icsk_pending == ICSK_TIME_RETRANS ||
	     icsk->icsk_pending == ICSK_TIME_LOSS_PROBE) &&
	    vip_tcp_probe_due(sk)) {
		/* The earlier probe is as lost as the segments it probed for. */
		tp->tlp_high_seq = 0;
		inet_csk_reset_xmit_timer(sk, ICSK_TIME_LOSS_PROBE, 0, TCP_RTO_MAX);
		return VIP_KICK_PROBE;
	}
	return VIP_KICK_NONE;
}

/*
 * When a peer leaves @addr and that address is on one of our links (a
 * two-sided move: we moved onto the LAN it left), its ARP entry sits
 * INCOMPLETE for ARP's whole timeout (~3 s), holding the outer packets sent
 * to it meanwhile. TCP does not retransmit a segment whose previous copy is
 * still queued in the host (skb_still_in_host_queue), so the kick would be
 * void until ARP gave up. Failing the entry now frees those packets, as ARP's
 * own timeout would (with the same host-unreachable report), and the entry
 * is resolved afresh if the address is used again. Entries of gateways are
 * left alone: other destinations wait on them too. Returns whether an entry
 * was failed. Process context.
 */
bool vip_neigh_release(struct net *net, __be32 addr)
{
	struct flowi4 fl4 = { .daddr = addr };
	struct neighbour *n;
	struct rtable *rt;
	bool released = false;

	rt = ip_route_output_key(net, &fl4);
	if (IS_ERR(rt))
		return false;
	if (rt->rt_type == RTN_UNICAST && rt->rt_gw_family == 0) {
		n = __ipv4_neigh_lookup(rt->dst.dev, (__force u32)addr);
		if (n) {
			if (READ_ONCE(n->nud_state) & NUD_INCOMPLETE)
				released = !neigh_update(n, NULL, NUD_FAILED,
							 NEIGH_UPDATE_F_OVERRIDE |
							 NEIGH_UPDATE_F_ADMIN, 0);
			neigh_release(n);
		}
	}
	ip_rt_put(rt);
	return released;
}
