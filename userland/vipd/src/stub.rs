//! The local DNS stub, on UDP and TCP, that `/etc/resolv.conf` points at. A queries are
//! answered by the engine (a VIP for a VIP-capable peer, upstream's answer for a legacy one);
//! everything else is forwarded to the upstream resolvers and their answer relayed.

use crate::dns::{RelayBits, Upstream, from_name};
use crate::driver::Handle;
use anyhow::{Context, Result};
use hickory_proto::{
    op::{Edns, Message, MessageType, OpCode, ResponseCode},
    rr::{DNSClass, RData, Record, RecordType, rdata::A},
};
use std::{net::SocketAddr, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
    sync::Semaphore,
};
use tracing::{debug, warn};
use vip_proto::engine::LookupAnswer;

/// Largest UDP answer to a query without EDNS (RFC 1035).
const CLASSIC_UDP_MAX: usize = 512;
/// The UDP payload we offer with EDNS: DNS Flag Day 2020's size, no IP fragments.
const EDNS_PAYLOAD: u16 = 1232;
/// A client that stays silent this long on TCP is dropped.
const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(10);
/// UDP queries answered at once per socket; beyond it a query is dropped (the client
/// retries, as with any busy resolver), so a local flood cannot grow our tasks and memory.
const UDP_IN_FLIGHT: usize = 1024;
/// TCP clients served at once per listener; beyond it a new connection is closed at once.
const TCP_CLIENTS: usize = 64;

/// What answers the stub's queries.
pub struct Stub {
    pub engine: Handle,
    pub upstream: Upstream,
    /// TTL of answers that carry a VIP.
    pub vip_ttl: u32,
    /// AAAA queries for VIP hosts are answered with no address (`stub.hide_aaaa`).
    pub hide_aaaa: bool,
}

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
pub async fn serve_udp(daemon: Arc<Stub>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    let in_flight = Arc::new(Semaphore::new(UDP_IN_FLIGHT));
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                warn!("stub: udp receive: {e}");
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            continue;
        };
        let query = buf[..n].to_vec();
        let (daemon, socket) = (daemon.clone(), socket.clone());
        tokio::spawn(async move {
            let _permit = permit;
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
pub async fn serve_tcp(daemon: Arc<Stub>, listener: TcpListener) {
    let clients = Arc::new(Semaphore::new(TCP_CLIENTS));
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                // Dropping the stream closes it: the client sees the connection end.
                let Ok(permit) = clients.clone().try_acquire_owned() else {
                    continue;
                };
                let daemon = daemon.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    if let Err(e) = serve_tcp_client(&daemon, stream).await {
                        debug!(%peer, "stub: tcp client: {e}");
                    }
                });
            }
            Err(e) => warn!("stub: tcp accept: {e}"),
        }
    }
}

async fn serve_tcp_client(daemon: &Stub, mut stream: TcpStream) -> Result<()> {
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
pub async fn answer(daemon: &Stub, query: &[u8], udp: bool) -> Option<Vec<u8>> {
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
            usize::from(e.max_payload().min(EDNS_PAYLOAD)).max(CLASSIC_UDP_MAX)
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

async fn respond(daemon: &Stub, request: &Message) -> Message {
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
    // EDNS (RFC 6891) answered with EDNS, the client's DNSSEC OK bit echoed (RFC 3225)
    // and, with checking disabled, passed on with the question. We validate nothing
    // ourselves, so authentic data is never claimed.
    let bits = RelayBits {
        dnssec_ok: request.edns.as_ref().is_some_and(|e| e.flags().dnssec_ok),
        checking_disabled: request.metadata.checking_disabled,
    };
    reply.metadata.checking_disabled = bits.checking_disabled;
    reply.metadata.authentic_data = false;
    if let Some(edns) = &request.edns {
        if edns.version() > 0 {
            // RFC 6891 6.1.3: only version 0 is known here.
            let mut ours = Edns::new();
            ours.set_max_payload(EDNS_PAYLOAD);
            reply.set_edns(ours);
            reply.metadata.response_code = ResponseCode::BADVERS;
            return reply;
        }
        let mut ours = Edns::new();
        ours.set_max_payload(EDNS_PAYLOAD);
        ours.set_dnssec_ok(bits.dnssec_ok);
        reply.set_edns(ours);
    }

    let name = query.name();
    let internet = query.query_class() == DNSClass::IN;
    let is_a = query.query_type() == RecordType::A && internet;
    // A program that asks for both families (getaddrinfo with AF_UNSPEC) sends A and AAAA
    // at once; both go through the same lookup, which negotiates once.
    let is_aaaa = query.query_type() == RecordType::AAAA && internet && daemon.hide_aaaa;
    let answer = match (is_a || is_aaaa, from_name(name)) {
        (true, Some(fqdn)) => daemon.engine.lookup(fqdn).await,
        _ => LookupAnswer::Upstream,
    };
    match answer {
        // A VIP host: its VIP, and no IPv6 address (NOERROR, no data), so that nothing
        // connects around VIP.
        LookupAnswer::Vip(_) if is_aaaa => {}
        LookupAnswer::Vip(vip) => {
            reply.add_answer(Record::from_rdata(
                name.clone(),
                daemon.vip_ttl,
                RData::A(A(vip)),
            ));
        }
        LookupAnswer::Upstream => match daemon.upstream.relay(query, bits).await {
            Ok(upstream) => {
                reply.metadata.response_code = upstream.response_code;
                reply.answers = upstream.answers;
                reply.authorities = upstream.authorities;
                reply.additionals = upstream.additionals;
            }
            Err(e) => {
                warn!(%name, "upstream failed: {e:#}");
                reply.metadata.response_code = ResponseCode::ServFail;
            }
        },
        LookupAnswer::Failed => reply.metadata.response_code = ResponseCode::ServFail,
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Input;
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;
    use std::net::Ipv4Addr;
    use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
    use std::time::Duration;

    /// An upstream server on loopback: every name has 40 A records 192.0.2.1..40 and the
    /// AAAA record 2001:db8::1, except names starting with "nx", which do not exist.
    async fn fake_upstream() -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                let query = Message::from_vec(&buf[..n]).unwrap();
                let mut reply = Message::response(query.metadata.id, OpCode::Query);
                let q = query.queries[0].clone();
                if q.name().to_ascii().starts_with("nx") {
                    reply.metadata.response_code = ResponseCode::NXDomain;
                } else if q.query_type() == RecordType::AAAA {
                    reply.add_answer(Record::from_rdata(
                        q.name().clone(),
                        60,
                        RData::AAAA(hickory_proto::rr::rdata::AAAA(
                            "2001:db8::1".parse().unwrap(),
                        )),
                    ));
                } else if q.query_type() == RecordType::A {
                    for i in 1..=40 {
                        reply.add_answer(Record::from_rdata(
                            q.name().clone(),
                            60,
                            RData::A(A(Ipv4Addr::new(192, 0, 2, i))),
                        ));
                    }
                }
                reply.add_query(q);
                socket
                    .send_to(&reply.to_vec().unwrap(), peer)
                    .await
                    .unwrap();
            }
        });
        addr
    }

    /// A stub whose engine answers b.vip.test with a VIP and everything else "upstream".
    async fn stub() -> Stub {
        stub_hiding_aaaa(true).await
    }

    async fn stub_hiding_aaaa(hide_aaaa: bool) -> Stub {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                if let Input::Lookup { fqdn, reply } = input {
                    let answer = if fqdn.as_str() == "b.vip.test" {
                        LookupAnswer::Vip(Ipv4Addr::new(240, 0, 0, 2))
                    } else if fqdn.as_str() == "broken.vip.test" {
                        LookupAnswer::Failed
                    } else {
                        LookupAnswer::Upstream
                    };
                    let _ = reply.send(answer);
                }
            }
        });
        Stub {
            engine: Handle::new(tx),
            upstream: Upstream::new(&[fake_upstream().await], Duration::from_secs(1), 64, None)
                .unwrap(),
            vip_ttl: 7,
            hide_aaaa,
        }
    }

    fn query(name: &str, rtype: RecordType) -> Vec<u8> {
        let mut m = Message::query();
        m.metadata.id = 4242;
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), rtype));
        m.to_vec().unwrap()
    }

    async fn ask(stub: &Stub, bytes: &[u8], udp: bool) -> Message {
        Message::from_vec(&answer(stub, bytes, udp).await.unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_queries_for_vip_hosts_get_the_vip() {
        let stub = stub().await;
        let m = ask(&stub, &query("b.vip.test.", RecordType::A), true).await;
        assert_eq!(m.metadata.id, 4242);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].ttl, 7);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(240, 0, 0, 2))));
        // A failed negotiation is SERVFAIL, not a wrong answer.
        let m = ask(&stub, &query("broken.vip.test.", RecordType::A), true).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    }

    #[tokio::test]
    async fn vip_hosts_have_no_ipv6_address_unless_configured() {
        let stub = stub().await;
        let m = ask(&stub, &query("b.vip.test.", RecordType::AAAA), true).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty(), "{:?}", m.answers);
        // A legacy host's AAAA record is relayed; a failed negotiation is SERVFAIL.
        let m = ask(&stub, &query("legacy.vip.test.", RecordType::AAAA), true).await;
        assert_eq!(m.answers.len(), 1);
        let m = ask(&stub, &query("broken.vip.test.", RecordType::AAAA), true).await;
        assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
        // With hide_aaaa = false, upstream's answer, VIP host or not.
        let stub = stub_hiding_aaaa(false).await;
        let m = ask(&stub, &query("b.vip.test.", RecordType::AAAA), true).await;
        assert_eq!(m.answers.len(), 1);
    }

    #[tokio::test]
    async fn everything_else_is_relayed_from_upstream() {
        let stub = stub().await;
        let m = ask(&stub, &query("nxhost.vip.test.", RecordType::A), true).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Not an A or AAAA query: upstream answers, even for a VIP host.
        let m = ask(&stub, &query("b.vip.test.", RecordType::TXT), true).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        // 40 records do not fit 512 bytes: truncated over UDP, whole over TCP.
        let m = ask(&stub, &query("legacy.vip.test.", RecordType::A), true).await;
        assert!(m.metadata.truncation);
        let m = ask(&stub, &query("legacy.vip.test.", RecordType::A), false).await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 40);
    }

    /// An upstream server for `counted.test` A (192.0.2.7, TTL 60) that counts the
    /// queries it gets, and answers over UDP only with an empty truncated message when
    /// `truncate` is set (the whole answer then comes over TCP, on the same port).
    async fn counting_upstream(truncate: bool) -> (SocketAddr, Arc<AtomicUsize>) {
        counting_upstream_dropping(truncate, 0).await
    }

    /// As [`counting_upstream`], ignoring the first `drop` UDP queries.
    async fn counting_upstream_dropping(
        truncate: bool,
        drop: usize,
    ) -> (SocketAddr, Arc<AtomicUsize>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let tcp = TcpListener::bind(addr).await.unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let answer = |query: &Message| {
            let mut reply = Message::response(query.metadata.id, OpCode::Query);
            let q = query.queries[0].clone();
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
            ));
            reply.add_query(q);
            reply
        };
        let counted = count.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            loop {
                let (n, peer) = socket.recv_from(&mut buf).await.unwrap();
                if counted.fetch_add(1, AtomicOrdering::SeqCst) < drop {
                    continue;
                }
                let query = Message::from_vec(&buf[..n]).unwrap();
                let mut reply = answer(&query);
                if truncate {
                    reply.answers.clear();
                    reply.metadata.truncation = true;
                }
                let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
            }
        });
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = tcp.accept().await {
                tokio::spawn(async move {
                    let mut len = [0u8; 2];
                    while stream.read_exact(&mut len).await.is_ok() {
                        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
                        stream.read_exact(&mut query).await.unwrap();
                        let reply = answer(&Message::from_vec(&query).unwrap())
                            .to_vec()
                            .unwrap();
                        stream
                            .write_all(&(reply.len() as u16).to_be_bytes())
                            .await
                            .unwrap();
                        stream.write_all(&reply).await.unwrap();
                    }
                });
            }
        });
        (addr, count)
    }

    async fn stub_with(servers: &[SocketAddr]) -> Stub {
        let mut stub = stub().await;
        stub.upstream = Upstream::new(servers, Duration::from_millis(500), 64, None).unwrap();
        stub
    }

    #[tokio::test]
    async fn relayed_answers_are_cached_for_their_ttl() {
        let (server, count) = counting_upstream(false).await;
        let stub = stub_with(&[server]).await;
        for _ in 0..3 {
            let m = ask(&stub, &query("counted.test.", RecordType::A), true).await;
            assert_eq!(m.answers.len(), 1);
        }
        assert_eq!(count.load(AtomicOrdering::SeqCst), 1, "asked upstream once");
    }

    #[tokio::test]
    async fn a_silent_server_is_passed_over_within_one_timeout() {
        // Bound, so nothing refuses the query: it just never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (server, _) = counting_upstream(false).await;
        let stub = stub_with(&[silent.local_addr().unwrap(), server]).await;
        let start = std::time::Instant::now();
        let m = ask(&stub, &query("counted.test.", RecordType::A), true).await;
        assert_eq!(m.answers.len(), 1);
        assert!(
            start.elapsed() < Duration::from_millis(900),
            "took {:?}",
            start.elapsed()
        );
    }

    #[tokio::test]
    async fn a_lost_query_of_vipd_itself_is_sent_again() {
        // 300 ms: below the UDP client's own resend interval (333 ms), so the second
        // query is the retry of a whole attempt.
        let (server, count) = counting_upstream_dropping(false, 1).await;
        let upstream = Upstream::new(&[server], Duration::from_millis(300), 0, None).unwrap();
        let name = Name::from_ascii("counted.test.").unwrap();
        let m = upstream
            .query(name, DNSClass::IN, RecordType::A)
            .await
            .expect("answered on the second attempt");
        assert_eq!(m.answers.len(), 1);
        assert_eq!(count.load(AtomicOrdering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_truncated_answer_is_asked_again_over_tcp() {
        let (server, _) = counting_upstream(true).await;
        let stub = stub_with(&[server]).await;
        let m = ask(&stub, &query("counted.test.", RecordType::A), true).await;
        assert!(!m.metadata.truncation);
        assert_eq!(m.answers.len(), 1, "the whole answer, from TCP");
    }

    #[tokio::test]
    async fn edns_is_answered_with_edns_and_the_dnssec_bits_kept() {
        let (server, count) = counting_upstream(false).await;
        let stub = stub_with(&[server]).await;
        let with_edns = |dnssec_ok: bool, checking_disabled: bool, version: u8| {
            let mut m = Message::query();
            m.metadata.id = 7;
            m.metadata.recursion_desired = true;
            m.metadata.checking_disabled = checking_disabled;
            m.add_query(Query::query(
                Name::from_ascii("counted.test.").unwrap(),
                RecordType::A,
            ));
            let mut edns = Edns::new();
            edns.set_max_payload(4096);
            edns.set_dnssec_ok(dnssec_ok);
            edns.set_version(version);
            m.set_edns(edns);
            m.to_vec().unwrap()
        };
        let m = ask(&stub, &with_edns(false, false, 0), true).await;
        let edns = m.edns.expect("EDNS answered with EDNS");
        assert_eq!(edns.max_payload(), EDNS_PAYLOAD);
        assert!(!edns.flags().dnssec_ok);
        // DO and CD: echoed, and the question goes upstream (not from the cache).
        let m = ask(&stub, &with_edns(true, true, 0), true).await;
        assert!(m.edns.expect("EDNS").flags().dnssec_ok);
        assert!(m.metadata.checking_disabled);
        assert!(!m.metadata.authentic_data);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(count.load(AtomicOrdering::SeqCst), 2);
        // Without EDNS, none in the answer.
        let m = ask(&stub, &query("counted.test.", RecordType::A), true).await;
        assert!(m.edns.is_none());
        // An EDNS version we do not know: BADVERS.
        let m = ask(&stub, &with_edns(false, false, 1), true).await;
        // (16 is BADVERS with EDNS, BADSIG with TSIG: hickory decodes the latter.)
        assert_eq!(u16::from(m.metadata.response_code), 16);
        assert!(m.answers.is_empty());
    }

    #[tokio::test]
    async fn tcp_clients_beyond_the_limit_are_closed_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve_tcp(Arc::new(stub().await), listener));
        // Silent clients hold every slot (each for TCP_IDLE).
        let mut held = Vec::new();
        for _ in 0..TCP_CLIENTS {
            held.push(TcpStream::connect(addr).await.unwrap());
        }
        // Let the server accept them all before the next one.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), extra.read(&mut byte))
            .await
            .expect("the extra client was not closed");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "the extra client was served"
        );
        // A held client is still served.
        let q = query("b.vip.test.", RecordType::A);
        let client = &mut held[0];
        client
            .write_all(&(q.len() as u16).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&q).await.unwrap();
        let mut len = [0u8; 2];
        client.read_exact(&mut len).await.unwrap();
        assert!(u16::from_be_bytes(len) > 0);
    }

    #[tokio::test]
    async fn bad_queries_get_errors_not_crashes() {
        let stub = stub().await;
        // Garbage with an ID: FORMERR to that ID; without even an ID: nothing.
        let m = ask(&stub, &[0x12, 0x34, 0xff], true).await;
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (0x1234, ResponseCode::FormErr)
        );
        assert!(answer(&stub, &[7], true).await.is_none());
        // An update sent to the stub is not implemented.
        let mut update = Message::query();
        update.metadata.op_code = OpCode::Update;
        let m = ask(&stub, &update.to_vec().unwrap(), true).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        // Two questions in one query: FORMERR.
        let mut two = Message::query();
        two.add_query(Query::query(Name::from_ascii("a.").unwrap(), RecordType::A));
        two.add_query(Query::query(Name::from_ascii("b.").unwrap(), RecordType::A));
        let m = ask(&stub, &two.to_vec().unwrap(), true).await;
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    }
}
