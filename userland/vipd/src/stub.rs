//! The local DNS stub, on UDP and TCP, that `/etc/resolv.conf` points at. A queries are
//! answered by the daemon (a VIP for a VIP-capable peer, upstream's answer for a legacy one);
//! everything else is forwarded to the upstream resolvers and their answer relayed.

use crate::daemon::{Answer, Daemon};
use crate::dns::from_name;
use anyhow::{Context, Result};
use hickory_proto::{
    op::{Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, RData, Record, RecordType, rdata::A},
};
use std::{net::SocketAddr, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};
use tracing::{debug, warn};

/// Largest UDP answer to a query without EDNS (RFC 1035).
const CLASSIC_UDP_MAX: usize = 512;
/// A client that stays silent this long on TCP is dropped.
const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(10);

/// Binds every listen address (UDP and TCP) now, so that a taken port fails start-up.
pub async fn bind(addrs: &[SocketAddr]) -> Result<Vec<(Arc<UdpSocket>, TcpListener)>> {
    let mut out = Vec::new();
    for &addr in addrs {
        let udp = UdpSocket::bind(addr)
            .await
            .with_context(|| format!("cannot listen for DNS on udp {addr}"))?;
        let tcp = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for DNS on tcp {addr}"))?;
        out.push((Arc::new(udp), tcp));
    }
    Ok(out)
}

/// Serves one UDP socket forever.
pub async fn serve_udp(daemon: Arc<Daemon>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                warn!("stub: udp receive: {e}");
                continue;
            }
        };
        let query = buf[..n].to_vec();
        let (daemon, socket) = (daemon.clone(), socket.clone());
        tokio::spawn(async move {
            if let Some(reply) = answer(&daemon, &query, true).await
                && let Err(e) = socket.send_to(&reply, peer).await
            {
                debug!(%peer, "stub: udp send: {e}");
            }
        });
    }
}

/// Serves one TCP listener forever (RFC 1035 section 4.2.2 framing; several queries per
/// connection, answered in order).
pub async fn serve_tcp(daemon: Arc<Daemon>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_tcp_client(&daemon, stream).await {
                        debug!(%peer, "stub: tcp client: {e}");
                    }
                });
            }
            Err(e) => warn!("stub: tcp accept: {e}"),
        }
    }
}

async fn serve_tcp_client(daemon: &Daemon, mut stream: TcpStream) -> Result<()> {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return Ok(()),
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query)).await??;
        let Some(reply) = answer(daemon, &query, false).await else {
            return Ok(());
        };
        let len = u16::try_from(reply.len()).context("answer too long for TCP")?;
        stream.write_all(&len.to_be_bytes()).await?;
        stream.write_all(&reply).await?;
    }
}

/// The reply to one query, or nothing for bytes that are not even a DNS header.
pub async fn answer(daemon: &Daemon, query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let request = match Message::from_vec(query) {
        Ok(m) => m,
        Err(e) => {
            debug!("stub: undecodable query: {e}");
            // Answer FORMERR if there is at least an ID to answer to.
            let id = u16::from_be_bytes([*query.first()?, *query.get(1)?]);
            return Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
                .to_vec()
                .ok();
        }
    };
    let reply = respond(daemon, &request).await;
    let limit = if !udp {
        usize::from(u16::MAX)
    } else {
        request.edns.as_ref().map_or(CLASSIC_UDP_MAX, |e| {
            usize::from(e.max_payload()).max(CLASSIC_UDP_MAX)
        })
    };
    let bytes = reply.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    // Too long for this transport: the client retries over TCP.
    let mut truncated = reply.truncate();
    truncated.metadata.truncation = true;
    truncated.to_vec().ok()
}

async fn respond(daemon: &Daemon, request: &Message) -> Message {
    let id = request.metadata.id;
    let mut reply = Message::response(id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    if request.metadata.message_type != MessageType::Query
        || request.metadata.op_code != OpCode::Query
    {
        reply.metadata.response_code = ResponseCode::NotImp;
        return reply;
    }
    let [query] = request.queries.as_slice() else {
        reply.metadata.response_code = ResponseCode::FormErr;
        return reply;
    };
    reply.add_query(query.clone());

    let name = query.name();
    let is_a = query.query_type() == RecordType::A && query.query_class() == DNSClass::IN;
    let answer = match (is_a, from_name(name)) {
        (true, Some(fqdn)) => daemon.resolve_a(&fqdn).await,
        _ => {
            daemon
                .forward(name.clone(), query.query_class(), query.query_type())
                .await
        }
    };
    match answer {
        Answer::Vip(vip) => {
            let ttl = daemon.config().stub.vip_ttl;
            reply.add_answer(Record::from_rdata(name.clone(), ttl, RData::A(A(vip))));
        }
        Answer::Upstream(upstream) => {
            reply.metadata.response_code = upstream.metadata.response_code;
            reply.metadata.authentic_data = false;
            reply.answers = upstream.answers;
            reply.authorities = upstream.authorities;
            reply.additionals = upstream.additionals;
        }
        Answer::Failure(rcode) => reply.metadata.response_code = rcode,
    }
    reply
}
