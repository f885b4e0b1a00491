//! `vipd`: the VIP daemon. A DNS stub that answers applications' lookups with negotiated
//! VIPs (paper section 3.1), the negotiation protocol between daemons, and our secure
//! dynamic DNS updates.

mod config;
mod daemon;
mod dns;
mod kernel;
mod peers;
mod stub;
mod tsig;

use anyhow::{Context, Result};
use clap::Parser;
use config::{AddressChoice, Config};
use ipnet::Ipv4Net;
use std::{
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};
use tracing::{error, info, warn};
use vip_proto::{crypto::Identity, known_peers::KnownPeers};

#[derive(Parser)]
#[command(
    name = "vipd",
    version,
    about = "The VIP daemon: DNS stub, VIP negotiation, secure dynamic DNS"
)]
struct Cli {
    /// The configuration file.
    #[arg(short, long, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// Check the configuration and the key files, then exit.
    #[arg(long)]
    check: bool,
    /// Log filter (tracing's EnvFilter syntax); the VIPD_LOG variable overrides it.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("VIPD_LOG").unwrap_or_else(|_| cli.log.clone());
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // journald stamps each line itself.
    if journald {
        builder.without_time().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            eprintln!("vipd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = Config::load(&cli.config)?;
    let key = match (&config.update.key_file, config.update.enabled) {
        (Some(path), true) => Some(tsig::TsigKey::load(path)?),
        _ => None,
    };
    if let Some(key) = &key {
        key.signer()?;
    }
    let zone = config.zone()?;
    if cli.check {
        println!("{}: configuration is valid", cli.config.display());
        return Ok(());
    }

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.state_dir)
        .with_context(|| {
            format!(
                "cannot create the state directory {}",
                config.state_dir.display()
            )
        })?;
    let identity = Identity::load_or_generate(&config.state_dir.join("identity.key"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let known = KnownPeers::load(&config.state_dir.join("known_peers"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let home_vip = home_vip(&config.state_dir.join("home_vip"), config.vip_range)?;

    // Everything that can refuse us (module, ports, the DNS server's verdict on our key) is
    // checked before the kernel is touched or our VIP capability is published.
    let module = kernel::Kernel::module().await?;
    let socket = negotiation_socket(config.negotiation.port)?;
    let listeners = stub::bind(&config.stub.listen).await?;
    let address = match config.address {
        AddressChoice::Fixed(a) => a,
        AddressChoice::Auto => source_toward(config.update_server())?,
    };
    let updater = match &key {
        Some(key) => {
            let updater = dns::Updater::new(
                config.update_server(),
                &zone,
                key,
                config.upstream_timeout(),
            )?;
            // A slow server is waited for (a few tries); a refusal ends start-up at once.
            let records = [(config.fqdn.clone(), address)];
            let mut attempt = 1;
            while let Err(e) = updater.publish(&records, config.update.ttl).await {
                if e.downcast_ref::<dns::NoAnswer>().is_none() || attempt == STARTUP_UPDATE_TRIES {
                    return Err(e);
                }
                warn!("{e:#}; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(attempt.into())).await;
                attempt += 1;
            }
            Some(updater)
        }
        None => None,
    };

    let kernel = kernel::Kernel::open(module, &config.device).await?;
    kernel.add_local_vip(home_vip).await?;
    kernel.route(config.vip_range, home_vip).await?;
    let peers_path = config.state_dir.join("peers.json");
    let peers = recover_peers(&peers_path, &kernel, home_vip).await;

    if let Some(updater) = &updater {
        let records = [
            (config.fqdn.clone(), address),
            (dns::magic_name(&config.fqdn)?, home_vip),
        ];
        updater.publish(&records, config.update.ttl).await?;
        info!(fqdn = %config.fqdn, %address, %home_vip, "published our address and VIP capability");
    }

    let upstream = dns::Upstream::new(&config.upstream.servers, config.upstream_timeout());
    let listen = config.stub.listen.clone();
    let daemon = Arc::new(daemon::Daemon::new(
        config, identity, home_vip, upstream, kernel, socket, known, peers, peers_path, address,
        updater,
    ));

    tokio::spawn(daemon.clone().serve_negotiation());
    let (watcher, events) = (daemon.clone(), daemon.clone());
    tokio::spawn(async move {
        if let Err(e) = watcher.watch_addresses().await {
            error!("address changes will go unnoticed: {e:#}");
        }
    });
    tokio::spawn(async move {
        if let Err(e) = events.watch_kernel_events().await {
            error!("kernel events will go unheard: {e:#}");
        }
    });
    tokio::spawn(daemon.clone().renew_leases());
    for (udp, tcp) in listeners {
        tokio::spawn(stub::serve_udp(daemon.clone(), udp));
        tokio::spawn(stub::serve_tcp(daemon.clone(), tcp));
    }
    info!(stub = ?listen, %home_vip, "vipd ready");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    // Mappings stay in the kernel: connections outlive the daemon, and a restart adopts them.
    info!("stopping; kernel mappings are left in place");
    Ok(())
}

/// Tries of the first dynamic update when the server does not answer.
const STARTUP_UPDATE_TRIES: u32 = 5;

/// The negotiation and control socket. Its receive buffer is large: after a move, the
/// acks of every partner arrive at once (the default 208 KiB dropped most of 500).
fn negotiation_socket(port: u16) -> Result<tokio::net::UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    const RECEIVE_BUFFER: usize = 4 << 20;
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
        .with_context(|| format!("cannot listen for negotiation on udp port {port}"))?;
    // FORCE passes net.core.rmem_max (we have CAP_NET_ADMIN); plain SO_RCVBUF otherwise.
    if setsockopt(&socket, sockopt::RcvBufForce, &RECEIVE_BUFFER).is_err() {
        let _ = setsockopt(&socket, sockopt::RcvBuf, &RECEIVE_BUFFER);
    }
    socket.set_nonblocking(true)?;
    Ok(tokio::net::UdpSocket::from_std(socket)?)
}

/// Our home VIP: the one we propose in our magic record. Drawn once and kept, so that a
/// restarted daemon proposes what its partners already know.
fn home_vip(path: &Path, range: Ipv4Net) -> Result<Ipv4Addr> {
    if let Ok(text) = std::fs::read_to_string(path) {
        match text.trim().parse::<Ipv4Addr>() {
            Ok(vip) if range.contains(&vip) => return Ok(vip),
            _ => warn!(
                "{} does not hold a VIP in {range}; drawing a new one",
                path.display()
            ),
        }
    }
    let vip = peers::Peers::default().fresh_vip(range);
    std::fs::write(path, format!("{vip}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(vip)
}

/// The source address the kernel would use toward `server` (no packet is sent).
fn source_toward(server: SocketAddr) -> Result<Ipv4Addr> {
    let socket = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
    socket
        .connect(server)
        .with_context(|| format!("no route toward {server} to choose our address by"))?;
    match socket.local_addr()? {
        SocketAddr::V4(a) => Ok(*a.ip()),
        SocketAddr::V6(_) => anyhow::bail!("an IPv6 source toward {server}"),
    }
}

/// The partners saved by a previous run whose mappings the kernel still holds (the daemon
/// was restarted, the host was not); after a reboot the table starts empty
/// (reclaim-on-reboot, paper section 4.1.2).
async fn recover_peers(path: &Path, kernel: &kernel::Kernel, home_vip: Ipv4Addr) -> peers::Peers {
    let mut peers = peers::Peers::new(home_vip);
    let saved = match peers::Peers::load(path) {
        Ok(Some(saved)) => saved,
        Ok(None) => return peers,
        Err(e) => {
            warn!("ignoring {}: {e:#}", path.display());
            return peers;
        }
    };
    let mappings = match kernel.mappings().await {
        Ok(m) => m,
        Err(e) => {
            warn!("cannot read the kernel table: {e:#}");
            return peers;
        }
    };
    for peer in saved.iter() {
        let live = mappings
            .iter()
            .any(|m| m.spec.peer_vip == peer.peer_vip && m.spec.local_vip == Some(peer.local_vip));
        if live {
            peers.insert(peer.clone());
        }
    }
    if !peers.is_empty() {
        info!(
            partners = peers.len(),
            "recovered partners from the kernel table"
        );
    }
    peers
}
