//! DNS as a client: queries to the upstream resolvers, and secure dynamic updates
//! (RFC 2136, signed with TSIG) to our zone's primary server. All messages are built and
//! parsed by hickory.

use crate::tsig::TsigKey;
use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use hickory_net::{
    DnsError, NetError,
    client::Client,
    dnssec::DnssecDnsHandle,
    runtime::TokioRuntimeProvider,
    udp::UdpClientStream,
    xfer::{DnsHandle, FirstAnswer, RetryDnsHandle},
};
use hickory_proto::{
    dnssec::TrustAnchors,
    op::{
        DnsRequest, DnsRequestOptions, DnsResponse, Message, OpCode, Query, ResponseCode,
        UpdateMessage,
    },
    rr::{
        DNSClass, Name, RData, Record, RecordType,
        rdata::{A, TXT},
    },
    serialize::txt::trust_anchor::{Entry, Parser as AnchorParser},
};
use hickory_resolver::{
    NameServerPool, PoolContext, TlsConfig, TokioResolver,
    config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts},
};
use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    str::FromStr,
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};
use tracing::debug;
use vip_proto::{
    Fqdn,
    engine::{DnsAnswer, KeyProof},
    fqdn::parse_key_record,
};

/// The magic name of `fqdn` (paper section 3.1: its A record holds the VIP its owner
/// proposes for itself).
pub fn magic_name(fqdn: &Fqdn) -> Result<Fqdn> {
    fqdn.magic()
        .ok_or_else(|| anyhow!("{fqdn}: the magic name would have a label over 63 bytes"))
}

/// A record we publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// An A record (our address, our magic record).
    A(Fqdn, Ipv4Addr),
    /// Our key record: `_vipkey.<name>` TXT.
    Key(Fqdn, String),
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

/// The upstream resolvers, through hickory-resolver: servers ranked by how fast they
/// answer and asked two at a time, another one tried when one fails, TCP when an answer is
/// truncated, EDNS. The servers can change while vipd runs (systemd-resolved's, followed
/// as the host moves between networks): each question uses the set of the moment.
#[derive(Clone)]
pub struct Upstream {
    shared: Arc<Shared>,
}

struct Shared {
    timeout: Duration,
    cache_size: u64,
    anchors: Option<Anchors>,
    /// Held only to copy or replace the pointer: never across a query.
    current: RwLock<Arc<Resolvers>>,
}

/// The resolvers of one set of servers.
struct Resolvers {
    servers: Vec<SocketAddr>,
    /// The stub's plain questions: answers cached as long as their TTLs allow.
    cached: TokioResolver,
    /// The engine's questions, and the stub's DNSSEC ones (DO or CD set), never from the
    /// cache: the engine asks when what it knew failed (a peer moved), so only the
    /// servers' answer of now will do; a DNSSEC client wants the signatures, which the
    /// cache does not keep.
    pool: RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>,
    /// Validates key records in the zones a trust anchor covers (paper section 3.4).
    validator: Option<Validator>,
}

/// The zone keys DNSSEC validation starts from: DNSKEY records in zone-file syntax, as
/// BIND writes them to `K<zone>.+<alg>+<tag>.key`. Zone anchors only, never the root: a
/// key record outside the zones listed is trusted on first use, as without DNSSEC.
#[derive(Clone)]
pub struct Anchors {
    zones: Vec<Name>,
    keys: Arc<TrustAnchors>,
}

impl Anchors {
    /// Reads the anchors in `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the trust anchor file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in the trust anchor file {}", path.display()))
    }

    /// Parses DNSKEY records; anything else, no record at all, or a root key is refused.
    pub fn parse(text: &str) -> Result<Self> {
        let entries = AnchorParser::new(text).parse().map_err(|e| {
            anyhow!("not a list of DNSKEY records (DS records are not supported): {e}")
        })?;
        let mut zones: Vec<Name> = Vec::new();
        for entry in &entries {
            let Entry::DNSKEY(record) = entry else {
                bail!("only DNSKEY records belong here");
            };
            let zone = record.name();
            if zone.is_root() {
                bail!("a root key: only the keys of the zones that publish VIP hosts belong here");
            }
            if !record.data().zone_key() || record.data().revoke() {
                bail!("{zone}: a DNSKEY that is not a zone key, or is revoked");
            }
            if !zones.contains(zone) {
                zones.push(zone.clone());
            }
        }
        if zones.is_empty() {
            bail!("no DNSKEY record");
        }
        let keys = TrustAnchors::from_str(text).map_err(|e| anyhow!("{e}"))?;
        Ok(Self {
            zones,
            keys: Arc::new(keys),
        })
    }

    /// The zones the anchors are for.
    pub fn zones(&self) -> &[Name] {
        &self.zones
    }

    /// Whether `name` lies in a zone an anchor is for.
    pub fn cover(&self, name: &Name) -> bool {
        self.zones.iter().any(|zone| zone.zone_of(name))
    }
}

impl Resolvers {
    fn new(
        servers: &[SocketAddr],
        timeout: Duration,
        cache_size: u64,
        anchors: Option<&Anchors>,
    ) -> Result<Self> {
        let name_servers: Vec<NameServerConfig> = servers
            .iter()
            .map(|server| {
                let mut config = NameServerConfig::udp_and_tcp(server.ip());
                for connection in &mut config.connections {
                    connection.port = server.port();
                }
                config
            })
            .collect();
        let mut options = ResolverOpts::default();
        options.timeout = timeout;
        // Names are asked fully qualified, never with a search list; /etc/hosts is for
        // the client's own resolver, not for a DNS server to answer from.
        options.ndots = 0;
        options.use_hosts_file = ResolveHosts::Never;
        options.cache_size = cache_size;
        // A forwarder relays what a server says, CNAME chains included.
        options.preserve_intermediates = true;
        let config = ResolverConfig::from_parts(None, vec![], name_servers.clone());
        let cached = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(options.clone())
            .build()
            .context("cannot set up the upstream resolver")?;
        // What the cached resolver does too: a query that fails (no answer in time from any
        // server) is sent again, `attempts` times in all (resolv.conf's default, 2).
        let attempts = options.attempts;
        let context = PoolContext::new(
            options,
            TlsConfig::new().context("cannot set up the upstream resolver")?,
        );
        let pool = RetryDnsHandle::new(
            NameServerPool::from_config(
                name_servers,
                Arc::new(context),
                TokioRuntimeProvider::default(),
            ),
            attempts,
        );
        // hickory keeps validated answers for their TTL, which whoever answers sets: bounded
        // here, so that an old signed record is not kept "secure" past a minute, nor a
        // flood of names (initiators choose theirs) kept in memory.
        let validator = anchors.map(|anchors| Validator {
            anchors: anchors.clone(),
            handle: DnssecDnsHandle::with_trust_anchor(pool.clone(), anchors.keys.clone())
                .validation_cache_size(VALIDATION_CACHE)
                .positive_validation_ttl(Duration::ZERO..=VALIDATION_TTL)
                .negative_validation_ttl(Duration::ZERO..=VALIDATION_TTL),
            // The record and the zone's DNSKEY set, each perhaps retried once.
            timeout: timeout * 4,
        });
        Ok(Self {
            servers: servers.to_vec(),
            cached,
            pool,
            validator,
        })
    }
}

/// hickory's validating handle over the upstream pool.
#[derive(Clone)]
struct Validator {
    anchors: Anchors,
    handle: DnssecDnsHandle<RetryDnsHandle<NameServerPool<TokioRuntimeProvider>>>,
    /// How long one validation (the record, then the zone's keys) may take.
    timeout: Duration,
}

/// Validated answers kept, and for how long at most.
const VALIDATION_CACHE: usize = 4096;
const VALIDATION_TTL: Duration = Duration::from_secs(60);

/// Validation queries one answer may need (the record, the zone's DNSKEY set, and a
/// walk toward the anchor when a record is unsigned): hickory's default is 26.
const MAX_VALIDATION_DEPTH: usize = 8;

/// Upstream's answer to a relayed question.
#[derive(Debug, Default)]
pub struct Relayed {
    pub response_code: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// How the stub relays a question: its client's DNSSEC bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayBits {
    /// DNSSEC OK (RFC 3225): the client wants signatures.
    pub dnssec_ok: bool,
    /// Checking disabled: the client validates itself.
    pub checking_disabled: bool,
}

impl Upstream {
    /// Sets up the resolvers for `servers` (no packet is sent yet); `timeout` is one
    /// query's; `cache_size` answers at most are cached, none with 0; key records in the
    /// zones `anchors` cover must validate.
    pub fn new(
        servers: &[SocketAddr],
        timeout: Duration,
        cache_size: u64,
        anchors: Option<Anchors>,
    ) -> Result<Self> {
        let resolvers = Resolvers::new(servers, timeout, cache_size, anchors.as_ref())?;
        Ok(Self {
            shared: Arc::new(Shared {
                timeout,
                cache_size,
                anchors,
                current: RwLock::new(Arc::new(resolvers)),
            }),
        })
    }

    /// The servers asked now.
    pub fn servers(&self) -> Vec<SocketAddr> {
        self.now().servers.clone()
    }

    /// Asks `servers` from now on (questions under way finish with the old ones); the
    /// cache starts empty, as the answers of another network's servers may not hold.
    pub fn set_servers(&self, servers: &[SocketAddr]) -> Result<()> {
        let shared = &self.shared;
        let resolvers = Resolvers::new(
            servers,
            shared.timeout,
            shared.cache_size,
            shared.anchors.as_ref(),
        )?;
        *shared
            .current
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(resolvers);
        Ok(())
    }

    fn now(&self) -> Arc<Resolvers> {
        self.shared
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The servers' answer to `query` now, from no cache. A negative answer (NXDOMAIN, no
    /// data, or an error RCODE) is `Ok` with no answers; only no answer at all is `Err`.
    pub async fn query(&self, name: Name, class: DNSClass, rtype: RecordType) -> Result<Message> {
        let mut query = Query::query(name.clone(), rtype);
        query.set_query_class(class);
        match self
            .now()
            .pool
            .lookup(query, DnsRequestOptions::default())
            .first_answer()
            .await
        {
            Ok(response) => Ok(response.into_message()),
            Err(NetError::Dns(DnsError::NoRecordsFound(_) | DnsError::ResponseCode(_))) => {
                Ok(Message::query())
            }
            Err(e) => {
                debug!(%name, ?rtype, "upstream query failed: {e}");
                Err(anyhow!("no upstream server answered: {e}"))
            }
        }
    }

    /// Upstream's answer to a client's question, from the cache when the client does not
    /// ask for DNSSEC.
    pub async fn relay(&self, query: &Query, bits: RelayBits) -> Result<Relayed> {
        if bits == RelayBits::default() && query.query_class() == DNSClass::IN {
            let now = self.now();
            let result = now
                .cached
                .lookup(query.name().clone(), query.query_type())
                .await;
            return relayed(result.map(|lookup| lookup.message().clone()));
        }
        let mut options = DnsRequestOptions::default();
        options.edns_set_dnssec_ok = bits.dnssec_ok;
        let mut request = DnsRequest::from_query(query.clone(), options);
        request.metadata.checking_disabled = bits.checking_disabled;
        let result = self.now().pool.send(request).first_answer().await;
        relayed(result.map(DnsResponse::into_message))
    }

    /// The A records of `fqdn` (the final answers; CNAMEs followed by the server).
    pub async fn lookup_a(&self, fqdn: &Fqdn) -> Result<Vec<Ipv4Addr>> {
        let response = self
            .query(to_name(fqdn)?, DNSClass::IN, RecordType::A)
            .await?;
        Ok(response
            .answers
            .iter()
            .filter_map(|r| match r.data {
                RData::A(A(addr)) => Some(addr),
                _ => None,
            })
            .collect())
    }

    /// The answer to one of the engine's questions, in its terms: NXDOMAIN and empty
    /// answers are `NoRecord`, no answer at all is `Failed`.
    pub async fn answer(&self, query: &vip_proto::engine::Query) -> DnsAnswer {
        use vip_proto::engine::Query as Q;
        let result = match query {
            Q::Address(fqdn) | Q::Magic(fqdn) => self.lookup_a(fqdn).await.map(addresses),
            Q::Key(fqdn) => match self.covering(fqdn) {
                Some((validator, name)) => return validator.keys(name).await,
                None => self.lookup_keys(fqdn).await.map(|keys| {
                    if keys.is_empty() {
                        DnsAnswer::NoRecord
                    } else {
                        DnsAnswer::Keys {
                            keys,
                            proof: KeyProof::Unvalidated,
                        }
                    }
                }),
            },
            Q::Reverse(addr) => self.lookup_ptr(*addr).await.map(|n| {
                if n.is_empty() {
                    DnsAnswer::NoRecord
                } else {
                    DnsAnswer::Names(n)
                }
            }),
        };
        result.unwrap_or_else(|e| {
            debug!(?query, "lookup failed: {e:#}");
            DnsAnswer::Failed
        })
    }

    /// The validator and the key record's name, when an anchor covers `fqdn`'s key record.
    fn covering(&self, fqdn: &Fqdn) -> Option<(Validator, Name)> {
        let validator = self.now().validator.clone()?;
        let name = key_record_name(fqdn).ok()?;
        validator.anchors.cover(&name).then_some((validator, name))
    }

    /// The public keys `fqdn`'s key record publishes (records that do not parse are
    /// skipped).
    pub async fn lookup_keys(&self, fqdn: &Fqdn) -> Result<Vec<[u8; 32]>> {
        let response = self
            .query(key_record_name(fqdn)?, DNSClass::IN, RecordType::TXT)
            .await?;
        Ok(published_keys(response.answers.iter()))
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

impl Validator {
    /// The keys the record `name` publishes, and whether they validate. A record whose
    /// signatures do not lead to an anchor is `Bogus`, whatever keys it claims; so is a
    /// denial of its existence that does not validate (hickory's handle turns a negative
    /// answer into a response only when its NSEC proof is secure, an `Nsec` error
    /// otherwise).
    async fn keys(&self, name: Name) -> DnsAnswer {
        let mut options = DnsRequestOptions::default();
        options.max_request_depth = MAX_VALIDATION_DEPTH;
        let lookup = self
            .handle
            .lookup(Query::query(name.clone(), RecordType::TXT), options)
            .first_answer();
        let result = match tokio::time::timeout(self.timeout, lookup).await {
            Ok(result) => result,
            Err(_) => {
                debug!(%name, "key record validation timed out");
                return DnsAnswer::Failed;
            }
        };
        match result {
            Ok(response) => {
                // The records at the name, less their signatures (which hickory leaves in).
                let records: Vec<&Record> = response
                    .answers
                    .iter()
                    .filter(|r| r.name == name && r.record_type() != RecordType::RRSIG)
                    .collect();
                // A key record is never an alias: hickory takes a CNAME at the name as an
                // answer without proving it.
                // (Debug lines only: the engine logs each refusal, rate-limited, by peer.)
                if records.iter().any(|r| r.record_type() != RecordType::TXT) {
                    debug!(%name, "the key record's answer is not a TXT record set (DNSSEC): bogus");
                    return bogus();
                }
                if records.is_empty() {
                    // hickory returns a denial as an error unless its proof is secure.
                    debug!(%name, "no key record (the denial validated)");
                    return DnsAnswer::NoRecord;
                }
                let keys = published_keys(records.iter().copied());
                let secure = records.iter().all(|r| r.proof.is_secure());
                debug!(%name, proofs = ?records.iter().map(|r| r.proof).collect::<Vec<_>>(), "key record checked (DNSSEC)");
                if keys.is_empty() && secure {
                    return DnsAnswer::NoRecord;
                }
                DnsAnswer::Keys {
                    keys,
                    proof: if secure {
                        KeyProof::Secure
                    } else {
                        KeyProof::Bogus
                    },
                }
            }
            Err(NetError::Dns(DnsError::Nsec { proof, .. })) if !proof.is_bogus() => {
                debug!(%name, ?proof, "no key record (DNSSEC denial)");
                DnsAnswer::NoRecord
            }
            Err(NetError::Dns(e @ (DnsError::Nsec { .. } | DnsError::DnssecBogus))) => {
                debug!(%name, "the key record's answer does not validate (DNSSEC): {e}");
                bogus()
            }
            Err(e) => {
                debug!(%name, "key record validation failed: {e}");
                DnsAnswer::Failed
            }
        }
    }
}

/// An answer that should have validated and did not: no key in it counts.
fn bogus() -> DnsAnswer {
    DnsAnswer::Keys {
        keys: Vec::new(),
        proof: KeyProof::Bogus,
    }
}

/// The name of `fqdn`'s key record.
fn key_record_name(fqdn: &Fqdn) -> Result<Name> {
    Ok(Name::from_ascii(format!("{}.", fqdn.key_record()))?)
}

/// The keys TXT records publish (those that do not parse are skipped).
fn published_keys<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<[u8; 32]> {
    records
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => {
                let text: String = txt
                    .txt_data
                    .iter()
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect();
                parse_key_record(&text)
            }
            _ => None,
        })
        .collect()
}

/// A relayed answer in the stub's terms: what a server said, negative answers included;
/// `Err` when no server said anything.
fn relayed(result: Result<Message, NetError>) -> Result<Relayed> {
    match result {
        Ok(message) => Ok(Relayed {
            response_code: message.metadata.response_code,
            answers: message.answers,
            authorities: message.authorities,
            additionals: message.additionals,
        }),
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => Ok(Relayed {
            response_code: none.response_code,
            authorities: match (none.authorities, none.soa) {
                (Some(authorities), _) => authorities.to_vec(),
                (None, Some(soa)) => vec![soa.into_record_of_rdata()],
                (None, None) => vec![],
            },
            ..Relayed::default()
        }),
        Err(NetError::Dns(DnsError::ResponseCode(response_code))) => Ok(Relayed {
            response_code,
            ..Relayed::default()
        }),
        Err(e) => Err(anyhow!("no upstream server answered: {e}")),
    }
}

fn addresses(addrs: Vec<Ipv4Addr>) -> DnsAnswer {
    if addrs.is_empty() {
        DnsAnswer::NoRecord
    } else {
        DnsAnswer::Addresses(addrs)
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

    /// Replaces the record set of each record's name with that one record, in one atomic
    /// update.
    pub async fn publish(&self, records: &[Publish], ttl: u32) -> Result<()> {
        let Some(first) = records.first() else {
            return Ok(());
        };
        let first = match first {
            Publish::A(fqdn, _) | Publish::Key(fqdn, _) => fqdn.clone(),
        };
        let mut zone = Query::new();
        zone.set_name(self.zone.clone())
            .set_query_class(DNSClass::IN)
            .set_query_type(RecordType::SOA);
        let mut message = Message::query();
        message.metadata.op_code = OpCode::Update;
        message.metadata.recursion_desired = false;
        message.add_zone(zone);
        for record in records {
            let (name, rtype, rdata) = match record {
                Publish::A(fqdn, addr) => (to_name(fqdn)?, RecordType::A, RData::A(A(*addr))),
                Publish::Key(fqdn, text) => (
                    Name::from_ascii(format!("{}.", fqdn.key_record()))?,
                    RecordType::TXT,
                    RData::TXT(TXT::new(vec![text.clone()])),
                ),
            };
            if !self.zone.zone_of(&name) {
                bail!("{name} is not in the zone {}", self.zone);
            }
            // Delete the RRset, then add the one record (RFC 2136 sections 2.5.2 and 2.5.1).
            let mut delete = Record::update0(name.clone(), 0, rtype);
            delete.dns_class = DNSClass::ANY;
            message.add_update(delete);
            message.add_update(Record::from_rdata(name, ttl, rdata));
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

    /// A BIND key file (`dnssec-keygen -a ECDSAP256SHA256 -f KSK vip.test`).
    const ANCHOR: &str = "; This is a key-signing key, keyid 30435, for vip.test.
vip.test. IN DNSKEY 257 3 13 eUv1SxmKHEzTYY/1WqiNylfDI7KojnAHI3BoWrNgynhm22b4y6Qpqm+1 kK0j9Ypn8Xyk5R/zNl78eE2VeKvDnQ==
";

    #[test]
    fn a_zone_key_file_is_an_anchor_for_its_zone_only() {
        let anchors = Anchors::parse(ANCHOR).unwrap();
        assert_eq!(anchors.zones(), [Name::from_ascii("vip.test.").unwrap()]);
        let covered = |name: &str| anchors.cover(&Name::from_ascii(name).unwrap());
        assert!(covered("_vipkey.a.vip.test."));
        assert!(covered("vip.test."));
        assert!(!covered("_vipkey.a.other.test."));
        assert!(!covered("xvip.test."));
    }

    #[test]
    fn anchors_that_cannot_be_used_are_refused_with_the_reason() {
        let refused = |text: &str| format!("{:#}", Anchors::parse(text).err().expect(text));
        assert!(refused("").contains("no DNSKEY"));
        assert!(refused("; nothing\n").contains("no DNSKEY"));
        assert!(
            refused("vip.test. IN DS 30435 13 2 18C2C20265E5E0A5857F17397BF0C766087EBB80CEA511527B5588B20DE00EA1\n")
                .contains("DS records are not supported")
        );
        let root = ANCHOR.replace("vip.test. IN", ". IN");
        assert!(refused(&root).contains("root key"));
        let not_a_zone_key = ANCHOR.replace(" 257 ", " 1 ");
        assert!(refused(&not_a_zone_key).contains("not a zone key"));
        assert!(refused("vip.test. IN DNSKEY 257 3 13 !!!\n").contains("DNSKEY"));
    }

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
