//! DNS as a client: queries to the upstream resolvers, and secure dynamic updates
//! (RFC 2136, signed with TSIG) to our zone's primary server. All messages are built and
//! parsed by hickory.

use crate::tsig::TsigKey;
use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use hickory_net::{
    client::{Client, ClientHandle},
    runtime::TokioRuntimeProvider,
    udp::UdpClientStream,
    xfer::DnsHandle,
};
use hickory_proto::{
    op::{DnsRequest, DnsRequestOptions, Message, OpCode, Query, ResponseCode, UpdateMessage},
    rr::{DNSClass, Name, RData, Record, RecordType, rdata::A},
};
use std::{net::Ipv4Addr, net::SocketAddr, time::Duration};
use tracing::debug;
use vip_proto::wire::Fqdn;

/// The prefix of the magic name that advertises VIP capability (paper section 3.1): the A
/// record of `vip105067072021-<first label>.<rest of the name>` holds the VIP its owner
/// proposes for itself.
pub const MAGIC_PREFIX: &str = "vip105067072021-";

/// The magic name of `fqdn`.
pub fn magic_name(fqdn: &Fqdn) -> Result<Fqdn> {
    let name = format!("{MAGIC_PREFIX}{}", fqdn.as_str());
    Fqdn::new(&name).map_err(|e| anyhow!("the magic name {name} is not a valid name: {e}"))
}

/// A hickory name for one of our names.
pub fn to_name(fqdn: &Fqdn) -> Result<Name> {
    let mut name =
        Name::from_ascii(fqdn.as_str()).with_context(|| format!("{fqdn} is not a DNS name"))?;
    name.set_fqdn(true);
    Ok(name)
}

/// Our name for a hickory name, if it is one (names with `_` and the like are not).
pub fn from_name(name: &Name) -> Option<Fqdn> {
    Fqdn::new(&name.to_ascii()).ok()
}

/// The outcome of an A query.
#[derive(Debug)]
pub struct ALookup {
    /// The whole response, for answering a legacy lookup exactly as upstream did.
    pub response: Message,
    /// The addresses found (the final answers; CNAMEs followed by the server).
    pub addrs: Vec<Ipv4Addr>,
}

/// The upstream resolvers, tried in order.
#[derive(Clone)]
pub struct Upstream {
    clients: Vec<(SocketAddr, Client<TokioRuntimeProvider>)>,
}

impl Upstream {
    /// Sets up one UDP client per server (no packet is sent yet).
    pub fn new(servers: &[SocketAddr], timeout: Duration) -> Self {
        let clients = servers
            .iter()
            .map(|&server| {
                let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
                    .with_timeout(Some(timeout))
                    .build();
                let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
                tokio::spawn(background);
                (server, client)
            })
            .collect();
        Self { clients }
    }

    /// Asks each server in turn until one answers (any RCODE counts as an answer).
    pub async fn query(&self, name: Name, class: DNSClass, rtype: RecordType) -> Result<Message> {
        let mut last = None;
        for (server, client) in &self.clients {
            let mut client = client.clone();
            match client.query(name.clone(), class, rtype).await {
                Ok(response) => return Ok(response.into_message()),
                Err(e) => {
                    debug!(%server, %name, ?rtype, "upstream query failed: {e}");
                    last = Some(anyhow!("{server}: {e}"));
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no upstream server")))
    }

    /// The A records of `fqdn`.
    pub async fn lookup_a(&self, fqdn: &Fqdn) -> Result<ALookup> {
        let response = self
            .query(to_name(fqdn)?, DNSClass::IN, RecordType::A)
            .await?;
        let addrs = response
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(addr)) => Some(addr),
                _ => None,
            })
            .collect();
        Ok(ALookup { response, addrs })
    }

    /// The names a reverse lookup of `addr` gives.
    pub async fn lookup_ptr(&self, addr: Ipv4Addr) -> Result<Vec<Fqdn>> {
        let o = addr.octets();
        let name = Name::from_ascii(format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]))?;
        let response = self.query(name, DNSClass::IN, RecordType::PTR).await?;
        Ok(response
            .answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(ptr) => from_name(&ptr.0),
                _ => None,
            })
            .collect())
    }
}

/// The server did not answer (in time): worth trying again, unlike a refusal.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(String);

/// Signs and sends our dynamic updates.
pub struct Updater {
    server: SocketAddr,
    zone: Name,
    key_name: String,
    client: Client<TokioRuntimeProvider>,
}

impl Updater {
    /// A client for `server` that signs every update with `key`.
    pub fn new(server: SocketAddr, zone: &Fqdn, key: &TsigKey, timeout: Duration) -> Result<Self> {
        let stream = UdpClientStream::builder(server, TokioRuntimeProvider::default())
            .with_timeout(Some(timeout))
            .with_signer(Some(key.signer()?))
            .build();
        let (client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
        tokio::spawn(background);
        Ok(Self {
            server,
            zone: to_name(zone)?,
            key_name: key.name.clone(),
            client,
        })
    }

    /// Replaces the A record set of each `(name, address)` pair with that one address, in
    /// one atomic update.
    pub async fn publish(&self, records: &[(Fqdn, Ipv4Addr)], ttl: u32) -> Result<()> {
        let Some(((first, _), _)) = records.split_first() else {
            return Ok(());
        };
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        message.add_zone(zone);
        for (fqdn, addr) in records {
            let name = to_name(fqdn)?;
            if !self.zone.zone_of(&name) {
                bail!("{fqdn} is not in the zone {}", self.zone);
            }
            // Delete the RRset, then add the one record (RFC 2136 sections 2.5.2 and 2.5.1).
            let mut delete = Record::update0(name.clone(), 0, RecordType::A);
            delete.dns_class = DNSClass::ANY;
            message.add_update(delete);
            message.add_update(Record::from_rdata(name, ttl, RData::A(A(*addr))));
        }
        let mut responses = self
            .client
            .send(DnsRequest::new(message, DnsRequestOptions::default()));
        let context = || {
            format!(
                "dynamic update of {first} at {} (zone {}, TSIG key {})",
                self.server, self.zone, self.key_name
            )
        };
        let response = responses
            .next()
            .await
            .ok_or_else(|| anyhow::Error::new(NoAnswer("no response".into())))
            .with_context(context)?
            .map_err(|e| anyhow::Error::new(NoAnswer(e.to_string())))
            .with_context(context)?;
        match response.metadata.response_code {
            ResponseCode::NoError => Ok(()),
            rcode => Err(anyhow!("refused by the server: {rcode}")).with_context(context),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_name_prefixes_the_first_label() {
        let fqdn = Fqdn::new("a.vip.test").unwrap();
        assert_eq!(
            magic_name(&fqdn).unwrap().as_str(),
            "vip105067072021-a.vip.test"
        );
        let long = Fqdn::new(&format!("{}.test", "x".repeat(60))).unwrap();
        assert!(magic_name(&long).is_err());
    }
}
