//! What the daemon watches: our addresses and routes (rtnetlink), from which it works out
//! the address it is reached at, and the module's events.

use crate::driver::{Handle, Input};
use anyhow::{Context, Result};
use futures::{StreamExt, TryStreamExt};
use rtnetlink::{MulticastGroup, packet_core::NetlinkPayload, packet_route::RouteNetlinkMessage};
use std::net::{Ipv4Addr, SocketAddr};
use tracing::debug;
use vip_netlink::Event;
use vip_proto::engine::KernelEvent;

/// The source address the kernel would use toward `server` (no packet is sent).
pub fn source_toward(server: SocketAddr) -> Result<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket
        .connect(server)
        .with_context(|| format!("no route toward {server} to choose our address by"))?;
    match socket.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => anyhow::bail!("an IPv6 source toward {server}"),
    }
}

/// Follows our addresses and routes, and tells the engine the address we are reached at
/// (the source toward `server`) whenever a change may have moved it. A fixed address is
/// never watched.
pub async fn addresses(server: SocketAddr, handle: Handle) -> Result<()> {
    let (connection, _rt, mut messages) = rtnetlink::new_multicast_connection(&[
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
    ])
    .context("rtnetlink multicast socket")?;
    tokio::spawn(connection);
    while let Some((first, _)) = messages.next().await {
        // (Timed by tests/bench/detect.sh: from here to the hint on the wire.)
        debug!("rtnetlink: an address or route changed");
        // What of a burst (an address, then its routes) has arrived already is looked at
        // at once, together; what comes later brings a look of its own. No settling
        // delay: a move's hints leave only after this look.
        let mut removed = is_address_removal(&first.payload);
        while let Ok((message, _)) = messages.try_recv() {
            removed |= is_address_removal(&message.payload);
        }
        match source_toward(server) {
            Ok(addr) => {
                handle.send(Input::Address(addr)).await;
                // A partner may have followed the address that went (see
                // `Engine::local_address_removed`), even when the one we publish stays.
                if removed {
                    handle.send(Input::AddressRemoved).await;
                }
            }
            // Between an old address going and a new one's route (break-before-make): the
            // move, once we have an address again, hints every active partner anyway.
            Err(e) => debug!("no usable address right now: {e:#}"),
        }
    }
    anyhow::bail!("the rtnetlink stream ended")
}

/// Whether `payload` reports an IPv4 address removed (the only addresses subscribed to).
fn is_address_removal(payload: &NetlinkPayload<RouteNetlinkMessage>) -> bool {
    matches!(
        payload,
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(_))
    )
}

/// Ends, with an error that says why, when the vip device `ifindex` goes: deleted with
/// `ip link del`, or with the module (`rmmod vip` deletes every vip device). The daemon
/// cannot carry on without it, so it exits; restarted (systemd does), it creates the
/// device again once the module is back, and its partners negotiate anew.
pub async fn device(ifindex: u32, name: String) -> Result<()> {
    let (connection, rt, mut messages) =
        rtnetlink::new_multicast_connection(&[MulticastGroup::Link])
            .context("rtnetlink multicast socket")?;
    tokio::spawn(connection);
    let gone = || {
        anyhow::anyhow!(
            "the vip device {name} was deleted (ip link del, or the vip module unloaded): \
             exiting; started again, vipd creates it anew once the module is loaded"
        )
    };
    // It may have gone before we listened.
    if rt
        .link()
        .get()
        .match_index(ifindex)
        .execute()
        .try_next()
        .await
        .is_err()
    {
        return Err(gone());
    }
    while let Some((message, _)) = messages.next().await {
        if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(link)) = message.payload
            && link.header.index == ifindex
        {
            return Err(gone());
        }
    }
    anyhow::bail!("the rtnetlink stream ended")
}

/// Listens to the module's events on a thread (the subscription is a blocking socket) and
/// hands them to the engine. Events lost to a full socket buffer (ENOBUFS) are reported
/// as such, once, and the engine checks the table; any other error ends the daemon.
pub async fn kernel_events(vip: &vip_netlink::Client, handle: Handle) -> Result<()> {
    let mut listener = vip_netlink::EventListener::subscribe(vip)
        .await
        .context("cannot subscribe to the module's events")?;
    let tx = handle.sender();
    std::thread::Builder::new()
        .name("vip-events".into())
        .spawn(move || {
            loop {
                let event = match listener.wait() {
                    Ok(event) => event,
                    Err(vip_netlink::Error::Socket(e))
                        if e.raw_os_error() == Some(libc_enobufs()) =>
                    {
                        if tx
                            .blocking_send(Input::KernelEvent(KernelEvent::Lost))
                            .is_err()
                        {
                            return;
                        }
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.blocking_send(Input::Fatal(format!("kernel events: {e}")));
                        return;
                    }
                };
                let event = match event {
                    Event::NoMapping { peer_vip } => KernelEvent::NoMapping { peer_vip },
                    Event::Unknown {
                        peer_vip,
                        local_vip,
                        seen,
                    } => KernelEvent::Unknown {
                        peer_vip,
                        local_vip,
                        seen,
                    },
                    Event::Moved {
                        peer_vip,
                        mapped,
                        seen,
                    } => KernelEvent::Moved {
                        peer_vip,
                        mapped,
                        seen,
                    },
                    Event::Roamed { peer_vip, new, .. } => KernelEvent::Roamed {
                        peer_vip,
                        addr: new,
                    },
                    // Our own changes, echoed (a roam's comes with its own event).
                    Event::MappingChanged { .. } => continue,
                };
                if tx.blocking_send(Input::KernelEvent(event)).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the event thread")?;
    Ok(())
}

fn libc_enobufs() -> i32 {
    nix::errno::Errno::ENOBUFS as i32
}
