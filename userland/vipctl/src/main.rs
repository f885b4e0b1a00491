//! `vipctl`: inspect and configure the VIP kernel module (over generic netlink) and the
//! daemon (`peers`, `unpin`, `resolve`, over vipd's control socket).

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use clap_complete::Shell;
use serde::Serialize;
use std::{net::Ipv4Addr, process::ExitCode, time::Duration};
use vip_netlink::{
    Change, Client, Event, EventListener, Mapping, MappingSpec, SetMode, VIP_MAP_F_INVALID,
    VIP_MAP_F_TEMPORARY,
};
use vip_proto::Fqdn;
use vip_proto::control::{ChangeKind, Peer, Reply, Request, Trust};

mod esp;

#[derive(Parser)]
#[command(
    name = "vipctl",
    version,
    about = "Inspect and configure VIP, the virtual IP layer"
)]
struct Cli {
    /// Print JSON instead of text.
    #[arg(short, long, global = true)]
    json: bool,
    /// vipd's control socket (for peers, unpin, resolve).
    #[arg(
        long,
        global = true,
        env = "VIPCTL_SOCKET",
        default_value = "/run/vipd/control.sock"
    )]
    socket: std::path::PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show every mapping, with its counters and the time since its last packets.
    Show,
    /// Mappings from peer VIPs to physical addresses.
    #[command(subcommand)]
    Map(MapCommand),
    /// Show the table's size and limit, the memory one mapping takes, and the counters
    /// (dropped packets by reason, events not sent, TCP sockets kicked after a move).
    Info,
    /// Change the namespace's settings: `max-mappings N`, the most mappings it may hold.
    #[command(subcommand)]
    Set(SetCommand),
    /// Print the module's events as they happen (packets to or from unmapped VIPs, from
    /// moved peers; mappings changed), one per line, until interrupted.
    Monitor,
    /// Apply `map add|replace|change|del` lines from FILE (- for standard input), in order,
    /// pipelined on one socket. Nothing is applied if a line does not parse.
    Batch { file: std::path::PathBuf },
    /// Show vipd's partners: name, VIPs, where each is, its key and how it is trusted,
    /// the session's age (from vipd); and the pair's ESP SAs: SPI, AEAD, age, packets and
    /// bytes (from the kernel, with CAP_NET_ADMIN).
    Peers,
    /// Forget the key vipd pinned for NAME (after that host was reinstalled): the next
    /// first contact takes the key DNS publishes.
    Unpin { name: String },
    /// NAME's address as programs see it (its VIP, negotiated if need be), or with
    /// --physical where the host really is now (from vipd).
    Resolve {
        name: String,
        #[arg(long)]
        physical: bool,
    },
    /// Make vipd read its configuration and known-peers files again (as SIGHUP does): the
    /// pinned keys become the file's, timers and limits take effect, and settings that
    /// need a restart are named.
    Reload,
    /// Print each change vipd makes to the mappings as it makes it (added, moved,
    /// invalidated, removed), until interrupted: the paper's callOnChange for scripts
    /// (from vipd; `monitor` shows the module's own events).
    Watch,
    /// Show the versions of vipctl and of the loaded module.
    Version,
    /// Print a shell completion script.
    Completions { shell: Shell },
    /// Print the man page (roff).
    Manpage,
}

#[derive(Subcommand)]
enum MapCommand {
    /// Add a mapping: VIP via IP [local VIP] [temporary] [invalid]. Fails if VIP has one.
    Add(SpecArgs),
    /// Add a mapping, or change the existing one.
    Replace(SpecArgs),
    /// Change an existing mapping. Fails if VIP has none.
    Change(SpecArgs),
    /// Delete the mapping of a VIP.
    Del { vip: Ipv4Addr },
    /// Show the mapping of a VIP.
    Get { vip: Ipv4Addr },
    /// Delete every mapping.
    Flush,
}

#[derive(Subcommand)]
enum SetCommand {
    /// The most mappings the namespace may hold (1 to 4194304; 1048576 by default).
    MaxMappings { max: u32 },
    /// The most mappings that roams on authenticated ESP may move a second (0 to 100000;
    /// 100 by default); 0 turns roaming off, and moves wait for the daemon's hints.
    RoamLimit { limit: u32 },
}

#[derive(clap::Args)]
struct SpecArgs {
    /// The peer's virtual IP (240.0.0.0/4).
    vip: Ipv4Addr,
    /// `via IP` (required), then optionally `local VIP`, `temporary`, `invalid`.
    #[arg(required = true, num_args = 1.., value_name = "WORDS")]
    words: Vec<String>,
}

fn is_vip(addr: Ipv4Addr) -> bool {
    addr.octets()[0] >= 240 && !addr.is_broadcast()
}

impl SpecArgs {
    /// Reads the iproute2-style keywords after the VIP.
    fn spec(&self) -> Result<MappingSpec> {
        if !is_vip(self.vip) {
            bail!("{} is not a virtual IP: VIPs are in 240.0.0.0/4", self.vip);
        }
        let mut spec = MappingSpec {
            peer_vip: self.vip,
            peer_ip4: Ipv4Addr::UNSPECIFIED,
            local_vip: None,
            flags: 0,
        };
        let mut via = None;
        let mut words = self.words.iter();
        while let Some(word) = words.next() {
            let mut address = |what: &str| -> Result<Ipv4Addr> {
                let value = words
                    .next()
                    .with_context(|| format!("`{word}` needs {what}"))?;
                value
                    .parse()
                    .with_context(|| format!("`{value}` is not an IPv4 address"))
            };
            match word.as_str() {
                "via" => via = Some(address("the peer's physical IPv4 address")?),
                "local" => {
                    let local = address("our virtual IP toward the peer")?;
                    if !is_vip(local) {
                        bail!("local {local} is not a virtual IP: VIPs are in 240.0.0.0/4");
                    }
                    spec.local_vip = Some(local);
                }
                "temporary" => spec.flags |= VIP_MAP_F_TEMPORARY,
                "invalid" => spec.flags |= VIP_MAP_F_INVALID,
                other => bail!("unknown word `{other}`: expected via, local, temporary or invalid"),
            }
        }
        spec.peer_ip4 = via.context("missing `via IP`: where the peer is now")?;
        let ip = spec.peer_ip4;
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() || ip.octets()[0] >= 240 {
            bail!("{ip} cannot be a peer's physical address: it must be a unicast IPv4 address");
        }
        Ok(spec)
    }
}

fn flag_names(flags: u32) -> Vec<&'static str> {
    let mut names = Vec::new();
    if flags & VIP_MAP_F_TEMPORARY != 0 {
        names.push("temporary");
    }
    if flags & VIP_MAP_F_INVALID != 0 {
        names.push("invalid");
    }
    names
}

fn ago(d: Option<Duration>) -> String {
    match d {
        None => "never".into(),
        Some(d) if d < Duration::from_secs(1) => format!("{}ms", d.as_millis()),
        Some(d) => format!("{:.1}s", d.as_secs_f64()),
    }
}

/// One line per mapping, in the spirit of `ip route`.
fn mapping_line(m: &Mapping) -> String {
    let mut line = format!("{} via {}", m.spec.peer_vip, m.spec.peer_ip4);
    if let Some(local) = m.spec.local_vip {
        line += &format!(" local {local}");
    }
    for flag in flag_names(m.spec.flags) {
        line += &format!(" {flag}");
    }
    line += &format!(
        " rx {} pkts {} bytes ({}) tx {} pkts {} bytes ({})",
        m.rx_packets,
        m.rx_bytes,
        ago(m.last_rx),
        m.tx_packets,
        m.tx_bytes,
        ago(m.last_tx)
    );
    line
}

fn event_line(event: &Event) -> String {
    match event {
        Event::NoMapping { peer_vip } => format!("no-mapping {peer_vip}"),
        Event::Unknown {
            peer_vip,
            local_vip,
            seen,
        } => {
            format!("unknown {peer_vip} to {local_vip} from {seen}")
        }
        Event::Moved {
            peer_vip,
            mapped,
            seen,
        } => {
            format!("moved {peer_vip} mapped {mapped} seen {seen}")
        }
        Event::MappingChanged { peer_vip, old, new } => {
            format!("mapping-changed {peer_vip} from {old} to {new}")
        }
        Event::Roamed { peer_vip, old, new } => {
            format!("roamed {peer_vip} from {old} to {new}")
        }
    }
}

fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// Reads one batch line: `map add|replace|change VIP WORDS...` or `map del VIP`. Parsed
/// directly rather than through clap, which costs too much for a million lines.
fn parse_batch_line(line: &str) -> Result<Change> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let vip = |text: &str| -> Result<Ipv4Addr> {
        text.parse()
            .with_context(|| format!("`{text}` is not an IPv4 address"))
    };
    let spec = |vip: Ipv4Addr, rest: &[&str]| {
        SpecArgs {
            vip,
            words: rest.iter().map(|w| w.to_string()).collect(),
        }
        .spec()
    };
    Ok(match words.as_slice() {
        ["map", "add", v, rest @ ..] => Change::Set(spec(vip(v)?, rest)?, SetMode::Add),
        ["map", "replace", v, rest @ ..] => Change::Set(spec(vip(v)?, rest)?, SetMode::Replace),
        ["map", "change", v, rest @ ..] => Change::Set(spec(vip(v)?, rest)?, SetMode::Change),
        ["map", "del", v] => Change::Del(vip(v)?),
        _ => bail!("expected `map add|replace|change VIP via IP ...` or `map del VIP`"),
    })
}

/// Reads a batch file into changes; any line that does not parse fails the whole batch.
fn parse_batch(text: &str) -> Result<Vec<(usize, Change)>> {
    let mut changes = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let change = parse_batch_line(line).with_context(|| format!("line {number}"))?;
        changes.push((number, change));
    }
    Ok(changes)
}

async fn run_batch(path: &std::path::Path) -> Result<()> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let changes = parse_batch(&text)?;
    let lines: Vec<usize> = changes.iter().map(|(n, _)| *n).collect();
    let failures = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = failures.clone();
    let total = lines.len();
    Client::connect()?
        .pipeline(
            changes.into_iter().map(|(_, c)| c).collect(),
            move |index, e| {
                if counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 20 {
                    eprintln!("vipctl: line {}: {e}", lines[index]);
                }
            },
        )
        .await?;
    let failed = failures.load(std::sync::atomic::Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} of {total} changes failed");
    }
    Ok(())
}

#[derive(Serialize)]
struct Versions {
    vipctl: &'static str,
    module: String,
    genl_version: u32,
}

/// The reply lines of a control connection, and its sending half: dropping that half
/// tells vipd the client is done (it ends a watch).
type Connection = (
    tokio::io::Lines<tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>>,
    tokio::net::unix::OwnedWriteHalf,
);

/// Connects to vipd's control socket and sends `request`.
async fn request_daemon(socket: &std::path::Path, request: &Request) -> Result<Connection> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .with_context(|| {
            format!(
                "cannot reach vipd at {} (is it running? are you root?)",
                socket.display()
            )
        })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    Ok((BufReader::new(read).lines(), write))
}

/// Sends one request to vipd's control socket and returns its reply; an error reply is an
/// error.
async fn ask_daemon(socket: &std::path::Path, request: &Request) -> Result<Reply> {
    let (mut lines, _write) = request_daemon(socket, request).await?;
    let answer = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("vipd did not answer within 30 s")??
        .context("vipd closed the connection without answering")?;
    match serde_json::from_str(&answer).context("vipd's answer does not parse")? {
        Reply::Error { message } => bail!("vipd: {message}"),
        reply => Ok(reply),
    }
}

/// Prints vipd's mapping changes as they come, one line each, until vipd goes.
async fn watch_daemon(socket: &std::path::Path, json: bool) -> Result<()> {
    let (mut lines, _write) = request_daemon(socket, &Request::Watch {}).await?;
    use std::io::Write as _;
    while let Some(line) = lines.next_line().await? {
        let reply: Reply = serde_json::from_str(&line).context("vipd's answer does not parse")?;
        let text = match reply {
            Reply::Error { message } => bail!("vipd: {message}"),
            Reply::Watching {} => continue,
            _ if json => line,
            reply => change_line(&reply),
        };
        // Flushed per line, for scripts; a pipe to `head` that closed ends the watch.
        let mut out = std::io::stdout().lock();
        match writeln!(out, "{text}").and_then(|()| out.flush()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            written => written?,
        }
    }
    bail!("vipd closed the connection")
}

/// One change as `vipctl watch` prints it.
fn change_line(reply: &Reply) -> String {
    match reply {
        Reply::Change {
            change,
            name,
            peer_vip,
            local_vip,
            address,
        } => {
            let verb = match change {
                ChangeKind::Added => "added",
                ChangeKind::Moved => "moved",
                ChangeKind::Invalidated => "invalidated",
                ChangeKind::Removed => "removed",
            };
            let mut line = format!("{verb} {peer_vip}");
            if let Some(name) = name {
                line += &format!(" ({name})");
            }
            if let Some(address) = address {
                line += &format!(" via {address}");
            }
            line + &format!(" local {local_vip}")
        }
        Reply::Lagged { missed } => format!("missed {missed} changes (read too slowly)"),
        other => format!("{other:?}"),
    }
}

fn fqdn(name: &str) -> Result<Fqdn> {
    Fqdn::new(name).map_err(|_| anyhow::anyhow!("`{name}` is not a host name"))
}

/// A partner as `vipctl peers` shows it: vipd's view and the pair's SAs.
#[derive(Serialize)]
struct PeerView<'a> {
    #[serde(flatten)]
    peer: &'a Peer,
    /// `None` when the kernel's SAs could not be read.
    esp: Option<esp::PairSas>,
}

fn peer_lines(peer: &Peer) -> String {
    let trust = match peer.trust {
        Trust::Dnssec => "vouched by DNSSEC",
        Trust::Pinned => "pinned",
        Trust::New => "new (not pinned)",
    };
    let session = peer
        .session_age_secs
        .map_or_else(|| "none".to_string(), |s| format!("{s}s old"));
    let mut state = Vec::new();
    if peer.negotiating {
        state.push("negotiating");
    }
    if peer.hint_pending {
        state.push("hint unacknowledged");
    }
    let state = if state.is_empty() {
        String::new()
    } else {
        format!("\n  state: {}", state.join(", "))
    };
    format!(
        "peer: {}\n  vip: {} (ours: {})\n  endpoint: {}\n  key: {} ({trust})\n  session: {session}{state}",
        peer.name, peer.peer_vip, peer.local_vip, peer.address, peer.key
    )
}

async fn run(cli: Cli) -> Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Peers => {
            let Reply::Peers { peers } = ask_daemon(&cli.socket, &Request::Peers {}).await? else {
                bail!("vipd answered something else");
            };
            // Without CAP_NET_ADMIN the SAs cannot be read; the rest is still shown.
            let states = esp::states().await.ok();
            let views: Vec<PeerView> = peers
                .iter()
                .map(|peer| PeerView {
                    peer,
                    esp: states
                        .as_deref()
                        .map(|s| esp::pair(s, peer.local_vip, peer.peer_vip)),
                })
                .collect();
            if json {
                print_json(&views)?;
            } else {
                let blocks: Vec<String> = views
                    .iter()
                    .map(|v| format!("{}\n{}", peer_lines(v.peer), esp::lines(v.esp.as_ref())))
                    .collect();
                if !blocks.is_empty() {
                    println!("{}", blocks.join("\n\n"));
                }
            }
        }
        Command::Unpin { name } => {
            let request = Request::Unpin { name: fqdn(&name)? };
            let Reply::Unpinned { name, was_pinned } = ask_daemon(&cli.socket, &request).await?
            else {
                bail!("vipd answered something else");
            };
            if json {
                print_json(&serde_json::json!({ "name": name, "was_pinned": was_pinned }))?;
            } else if was_pinned {
                println!(
                    "{name}: key unpinned; the next first contact takes the key DNS publishes"
                );
            } else {
                println!("{name}: no key was pinned");
            }
        }
        Command::Resolve { name, physical } => {
            let request = Request::Resolve {
                name: fqdn(&name)?,
                physical,
            };
            let Reply::Resolved { name, addresses } = ask_daemon(&cli.socket, &request).await?
            else {
                bail!("vipd answered something else");
            };
            if json {
                print_json(&serde_json::json!({ "name": name, "addresses": addresses }))?;
            } else if addresses.is_empty() {
                bail!("{name}: no address");
            } else {
                for address in addresses {
                    println!("{address}");
                }
            }
        }
        Command::Watch => watch_daemon(&cli.socket, json).await?,
        Command::Reload => {
            let reply = ask_daemon(&cli.socket, &Request::Reload {}).await?;
            let Reply::Reloaded { pins, need_restart } = &reply else {
                bail!("vipd answered something else: {reply:?}");
            };
            if json {
                print_json(&reply)?;
            } else {
                println!(
                    "reloaded: {} pinned keys added, {} removed, {} changed",
                    pins.added, pins.removed, pins.changed
                );
                if !need_restart.is_empty() {
                    println!(
                        "changed in the file but kept until vipd restarts: {}",
                        need_restart.join(", ")
                    );
                }
            }
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "vipctl", &mut std::io::stdout());
        }
        Command::Manpage => clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?,
        Command::Version => {
            let module = Client::connect()?.version().await?;
            let versions = Versions {
                vipctl: env!("CARGO_PKG_VERSION"),
                module: module.version,
                genl_version: module.genl_version,
            };
            if json {
                print_json(&versions)?;
            } else {
                println!("vipctl {}", versions.vipctl);
                println!(
                    "module {} (netlink protocol {})",
                    versions.module, versions.genl_version
                );
            }
        }
        Command::Batch { file } => run_batch(&file).await?,
        Command::Monitor => {
            let mut events = EventListener::subscribe(&Client::connect()?).await?;
            tokio::task::spawn_blocking(move || -> Result<()> {
                loop {
                    let event = events.wait()?;
                    if json {
                        print_json(&event)?;
                    } else {
                        println!("{}", event_line(&event));
                    }
                }
            })
            .await??;
        }
        Command::Info => {
            let info = Client::connect()?.info().await?;
            if json {
                print_json(&info)?;
            } else {
                println!(
                    "mappings: {} (at most {})",
                    info.mappings, info.max_mappings
                );
                println!("bytes per mapping: {}", info.mapping_size);
                match info.roam_limit {
                    Some(0) => println!("roaming: off"),
                    Some(limit) => println!("roaming: at most {limit} moves a second"),
                    None => {}
                }
                for (name, value) in info.stats.iter().filter(|(_, v)| **v > 0) {
                    println!("{name}: {value}");
                }
            }
        }
        Command::Set(SetCommand::MaxMappings { max }) => {
            Client::connect()?.set_max_mappings(max).await?
        }
        Command::Set(SetCommand::RoamLimit { limit }) => {
            Client::connect()?.set_roam_limit(limit).await?
        }
        Command::Show => {
            let mut mappings = Client::connect()?.map_dump().await?;
            mappings.sort_by_key(|m| m.spec.peer_vip);
            if json {
                print_json(&mappings)?;
            } else {
                for m in &mappings {
                    println!("{}", mapping_line(m));
                }
            }
        }
        Command::Map(command) => {
            let mut client = Client::connect()?;
            match command {
                MapCommand::Add(args) => client.map_set(&args.spec()?, SetMode::Add).await?,
                MapCommand::Replace(args) => {
                    client.map_set(&args.spec()?, SetMode::Replace).await?
                }
                MapCommand::Change(args) => client.map_set(&args.spec()?, SetMode::Change).await?,
                MapCommand::Del { vip } => client.map_del(vip).await?,
                MapCommand::Get { vip } => {
                    let m = client.map_get(vip).await?;
                    if json {
                        print_json(&m)?;
                    } else {
                        println!("{}", mapping_line(&m));
                    }
                }
                MapCommand::Flush => {
                    let deleted = client.map_flush().await?;
                    if json {
                        print_json(&serde_json::json!({ "deleted": deleted }))?;
                    } else {
                        println!("deleted {deleted} mappings");
                    }
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let result = runtime
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run(cli)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("vipctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_print_as_one_line_each() {
        let moved = Reply::Change {
            change: ChangeKind::Moved,
            name: Some(fqdn("b.vip.test").unwrap()),
            peer_vip: Ipv4Addr::new(240, 0, 0, 2),
            local_vip: Ipv4Addr::new(240, 0, 0, 1),
            address: Some(Ipv4Addr::new(198, 51, 100, 20)),
        };
        assert_eq!(
            change_line(&moved),
            "moved 240.0.0.2 (b.vip.test) via 198.51.100.20 local 240.0.0.1"
        );
        let removed = Reply::Change {
            change: ChangeKind::Removed,
            name: None,
            peer_vip: Ipv4Addr::new(240, 0, 0, 2),
            local_vip: Ipv4Addr::new(240, 0, 0, 1),
            address: None,
        };
        assert_eq!(change_line(&removed), "removed 240.0.0.2 local 240.0.0.1");
        assert!(change_line(&Reply::Lagged { missed: 3 }).starts_with("missed 3"));
    }

    fn spec(words: &str) -> Result<MappingSpec> {
        let mut argv = vec!["vipctl", "map", "add"];
        argv.extend(words.split_whitespace());
        let cli = Cli::try_parse_from(argv)?;
        match cli.command {
            Command::Map(MapCommand::Add(args)) => args.spec(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn batch_parses_or_refuses_whole() {
        let ok = parse_batch("# comment\n\nmap add 240.0.0.2 via 192.0.2.1\nmap del 240.0.0.2\n");
        assert_eq!(ok.unwrap().len(), 2);
        let err = parse_batch("map add 240.0.0.2 via 192.0.2.1\nmap add 10.0.0.1 via 192.0.2.1");
        assert!(format!("{:#}", err.unwrap_err()).starts_with("line 2"));
        let err = parse_batch("show");
        assert!(format!("{:#}", err.unwrap_err()).contains("expected `map"));
        let err = parse_batch("map del 240.0.0.2 extra");
        assert!(format!("{:#}", err.unwrap_err()).contains("expected `map"));
    }

    #[test]
    fn parses_full_spec() {
        let s = spec("240.0.0.2 via 192.0.2.20 local 240.0.0.1 temporary").unwrap();
        assert_eq!(s.peer_vip, Ipv4Addr::new(240, 0, 0, 2));
        assert_eq!(s.peer_ip4, Ipv4Addr::new(192, 0, 2, 20));
        assert_eq!(s.local_vip, Some(Ipv4Addr::new(240, 0, 0, 1)));
        assert_eq!(s.flags, VIP_MAP_F_TEMPORARY);
    }

    #[test]
    fn refuses_bad_specs() {
        for (words, why) in [
            ("10.0.0.1 via 192.0.2.20", "not a virtual IP"),
            ("255.255.255.255 via 192.0.2.20", "not a virtual IP"),
            ("240.0.0.2 local 240.0.0.1", "missing `via IP`"),
            ("240.0.0.2 via", "needs"),
            ("240.0.0.2 via 192.0.2.300", "not an IPv4 address"),
            ("240.0.0.2 via 240.0.0.9", "unicast"),
            ("240.0.0.2 via 127.0.0.1", "unicast"),
            (
                "240.0.0.2 via 192.0.2.20 local 192.0.2.1",
                "local 192.0.2.1 is not",
            ),
            ("240.0.0.2 via 192.0.2.20 frobnicate", "unknown word"),
        ] {
            let err = format!("{:#}", spec(words).unwrap_err());
            assert!(err.contains(why), "{words}: {err}");
        }
    }
}
