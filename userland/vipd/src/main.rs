//! `vipd`: the VIP daemon. A DNS stub that answers applications' lookups with negotiated
//! VIPs (paper section 3.1), the protocol between daemons, and our secure dynamic DNS
//! updates. The protocol itself is `vip_proto::engine`, which does no I/O; this binary is
//! its driver (`driver`), with the stub, the kernel, DNS and the state files around it.

mod config;
mod control;
mod dns;
mod driver;
mod kernel;
mod reload;
mod resolved;
mod state;
mod stub;
mod tsig;
mod watch;
mod xfrm;

use anyhow::{Context, Result};
use clap::Parser;
use config::{AddressChoice, Config, IpsecMode};
use ipnet::Ipv4Net;
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
};
use tokio::task::JoinSet;
use tracing::{error, info, warn};
use vip_proto::{
    Identity, KnownPeers,
    engine::{Engine, Partners},
    fqdn::key_record_text,
};

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
    /// Print the man page (roff) and exit (for `make install`).
    #[arg(long, hide = true)]
    manpage: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.manpage {
        let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command()).section("8");
        return match page.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("vipd: {e}");
                ExitCode::FAILURE
            }
        };
    }
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
    // Caught from the start: a SIGHUP (`systemctl reload`) during start-up would otherwise
    // end the daemon as a clean exit, which systemd does not restart. One that arrives
    // before the daemon is ready is handled once it is.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let config = Config::load(&cli.config)?;
    let key = match (&config.update.key_file, config.update.enabled) {
        (Some(path), true) => Some(tsig::TsigKey::load(path)?),
        _ => None,
    };
    if let Some(key) = &key {
        key.signer()?;
    }
    let zone = config.zone()?;
    let anchors = match &config.dnssec.trust_anchor {
        Some(path) => Some(dns::Anchors::load(path).context("dnssec.trust_anchor")?),
        None => None,
    };
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
    let counter = state::reserve_counters(&config.state_dir.join("counter"))?;

    // Everything that can refuse us (module, ports, the DNS server's verdict on our key) is
    // checked before the kernel is touched or our VIP capability is published.
    let module = kernel::Kernel::module().await?;
    let socket = Arc::new(negotiation_socket(config.negotiation.port)?);
    // Where systemd-resolved runs, it owns 127.0.0.53 and stays the host's resolver: vipd
    // answers it on an address of the vip device and asks the servers it knows.
    let resolved_bus = resolved::find(config.resolved.mode).await?;
    let mut listen = config.stub_listen(resolved_bus.is_some());
    let upstream_servers = match &resolved_bus {
        Some(bus) => {
            listen.push(SocketAddr::from((config.resolved.address, 53)));
            if config.upstream.servers.is_empty() {
                bus.servers(None, config.resolved.address).await?
            } else {
                config.upstream.servers.clone()
            }
        }
        None if config.upstream.servers.is_empty() => anyhow::bail!(
            "upstream.servers: none configured, and systemd-resolved, whose servers vipd would ask, is not running"
        ),
        None => config.upstream.servers.clone(),
    };
    if listen.is_empty() {
        anyhow::bail!(
            "stub.listen is empty and systemd-resolved is not running: the stub would answer nowhere"
        );
    }
    let listeners = stub::bind(&listen).await?;
    let control_listener = control::bind(&config.control_socket).await?;
    // The route toward this server gives our address ("auto"): the update server, or the
    // first IPv4 resolver that is not a local cache (the route toward it is the way out).
    let probe = config.update_server().or_else(|| {
        upstream_servers
            .iter()
            .find(|s| matches!(s.ip(), std::net::IpAddr::V4(v4) if !v4.is_loopback()))
            .copied()
    });
    let need_probe = || {
        probe.context("address = \"auto\" needs a server to find our route toward: set update.server or upstream.servers (systemd-resolved knows none yet)")
    };
    let address = match config.address {
        AddressChoice::Fixed(a) => a,
        AddressChoice::Auto => watch::source_toward(need_probe()?)?,
    };
    let updater = match &key {
        Some(key) => {
            let updater = dns::Updater::new(
                config.update_server().context("update.server")?,
                &zone,
                key,
                config.upstream_timeout(),
            )?;
            // A slow server is waited for (a few tries); a refusal ends start-up at once.
            let records = [dns::Publish::A(config.fqdn.clone(), address)];
            let mut attempt = 1;
            while let Err(e) = updater.publish(&records, config.update.ttl).await {
                if e.downcast_ref::<dns::NoAnswer>().is_none() || attempt == STARTUP_UPDATE_TRIES {
                    return Err(e);
                }
                warn!("{e:#}; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(attempt.into())).await;
                attempt += 1;
            }
            Some(Arc::new(updater))
        }
        None => None,
    };

    let mut kernel = kernel::Kernel::open(module, &config.device).await?;
    kernel.add_local_vip(home_vip).await?;
    kernel.route(config.vip_range, home_vip).await?;
    let resolved = match resolved_bus {
        Some(bus) => {
            kernel.add_service_address(config.resolved.address).await?;
            Some(Arc::new(resolved::Resolved::new(
                bus,
                kernel.ifindex(),
                config.resolved.address,
                config.upstream.servers.is_empty(),
            )?))
        }
        None => None,
    };
    let peers_path = config.state_dir.join("peers.json");
    let partners = recover_partners(&peers_path, &kernel, home_vip).await;
    kernel = start_esp(&config, kernel, home_vip).await?;

    if let Some(updater) = &updater {
        // Our key with our VIP capability, in one update: a peer that finds the magic
        // record finds the key it needs.
        let records = [
            dns::Publish::A(config.fqdn.clone(), address),
            dns::Publish::A(dns::magic_name(&config.fqdn)?, home_vip),
            dns::Publish::Key(config.fqdn.clone(), key_record_text(&identity.public_key())),
        ];
        updater.publish(&records, config.update.ttl).await?;
        info!(fqdn = %config.fqdn, %address, %home_vip, "published our address, VIP capability and key");
    }

    let mut engine_config = config.engine(home_vip);
    if let Some(anchors) = &anchors {
        engine_config.dnssec_zones = anchors.zones().iter().filter_map(dns::from_name).collect();
        info!(zones = ?engine_config.dnssec_zones, "key records in these zones must validate (DNSSEC)");
    }
    if upstream_servers.is_empty() {
        warn!(
            "systemd-resolved knows no DNS server for the other links yet: names that are not VIP hosts fail until it does"
        );
    }
    let upstream = dns::Upstream::new(
        &upstream_servers,
        config.upstream_timeout(),
        config.upstream.cache_size,
        anchors,
    )?;
    let pins: HashMap<_, _> = known.iter().map(|(f, k)| (f.clone(), *k)).collect();
    let engine = Engine::new(engine_config, identity, partners, pins, counter, address);

    // Every task below is needed: the first to end ends the daemon, with its reason
    // (systemd restarts it), rather than leave it half-alive.
    let (tx, rx) = tokio::sync::mpsc::channel(driver::INPUT_QUEUE);
    let handle = driver::Handle::new(tx);
    let mut tasks: JoinSet<(&'static str, Result<()>)> = JoinSet::new();
    let (changes, _) = tokio::sync::broadcast::channel(kernel::CHANGES_KEPT);
    let (kernel_worker, kernel_task) =
        kernel::KernelWorker::start(kernel.clone(), handle.clone(), changes.clone());
    let (writer, writer_task) = state::Writer::start(peers_path, known);
    tasks.spawn(async move { ("kernel worker", flatten(kernel_task.await)) });
    tasks.spawn(async move { ("state writer", flatten(writer_task.await)) });
    watch::kernel_events(kernel.vip(), handle.clone()).await?;
    let (ifindex, device) = (kernel.ifindex(), config.device.clone());
    tasks.spawn(async move { ("device watcher", watch::device(ifindex, device).await) });
    if config.ipsec.mode == IpsecMode::Required {
        let h = handle.clone();
        tasks.spawn(async move { ("XFRM events", xfrm::events(h).await) });
    }
    if config.address == AddressChoice::Auto {
        let (server, h) = (need_probe()?, handle.clone());
        tasks.spawn(async move { ("address watcher", watch::addresses(server, h).await) });
    }
    let (proven_tx, proven) = tokio::sync::mpsc::channel(driver::PROVEN_QUEUE);
    let (datagrams_tx, datagrams) = tokio::sync::mpsc::channel(driver::DATAGRAM_QUEUE);
    let (unproven_tx, unproven) = tokio::sync::mpsc::channel(driver::INITIATION_QUEUE);
    let door = Arc::new(driver::Door::default());
    let senders = driver::LaneSenders {
        proven: proven_tx,
        datagrams: datagrams_tx,
        unproven: unproven_tx,
    };
    let (s, a, d) = (socket.clone(), engine.admission(), door.clone());
    tasks.spawn(async move { ("protocol socket", driver::receive(s, a, senders, d).await) });
    let stub = Arc::new(stub::Stub {
        engine: handle.clone(),
        upstream: upstream.clone(),
        vip_ttl: config.stub.vip_ttl,
        hide_aaaa: config.stub.hide_aaaa,
    });
    for (udp, tcp) in listeners {
        tokio::spawn(stub::serve_udp(stub.clone(), udp));
        tokio::spawn(stub::serve_tcp(stub.clone(), tcp));
    }
    let reloader = Arc::new(reload::Reloader {
        path: cli.config.clone(),
        running: config.clone(),
        home_vip,
        engine: handle.clone(),
        running_reload: Default::default(),
    });
    let control = Arc::new(control::Control {
        engine: handle.clone(),
        upstream: upstream.clone(),
        changes,
        reloader: reloader.clone(),
    });
    tasks.spawn(async move {
        (
            "control socket",
            control::serve(control, control_listener).await,
        )
    });
    let stats_handle = handle.clone();
    let io = driver::Io {
        socket,
        upstream: upstream.clone(),
        updater,
        update_ttl: config.update.ttl,
        me: config.fqdn.clone(),
        kernel: kernel_worker,
        writer,
        handle,
        door,
    };
    tasks.spawn(async move {
        (
            "engine",
            driver::run(
                engine,
                rx,
                driver::Lanes {
                    proven,
                    datagrams,
                    unproven,
                },
                io,
            )
            .await,
        )
    });
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    // resolved sends names here only once the stub answers.
    if let Some(resolved) = &resolved {
        resolved.register().await?;
        info!(address = %config.resolved.address, device = %config.device, "registered with systemd-resolved as the device's DNS server for every name (~.)");
        let (resolved, upstream) = (resolved.clone(), upstream.clone());
        tasks.spawn(async move { ("systemd-resolved", resolved.follow(upstream).await) });
    }
    info!(stub = ?listen, %home_vip, "vipd ready");

    let ended: Result<()> = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = tokio::signal::ctrl_c() => break Ok(()),
            _ = usr1.recv() => stats_handle.send(driver::Input::LogStats).await,
            _ = hup.recv() => {
                // Logged by the reload itself; the main loop goes on at once.
                let reloader = reloader.clone();
                tokio::spawn(async move { control::reload(&reloader).await });
            }
            ended = tasks.join_next() => {
                break match ended {
                    None => Err(anyhow::anyhow!("no task")),
                    Some(Err(e)) => Err(anyhow::Error::from(e).context("a task panicked")),
                    Some(Ok((name, result))) => Err(result.err().unwrap_or_else(|| anyhow::anyhow!("ended")))
                        .context(format!("{name} stopped")),
                };
            }
        }
    };
    // However vipd ends, nothing runs on (the follower would register with resolved
    // again), and resolved stops sending names to a stub that no longer answers.
    tasks.shutdown().await;
    if let Some(resolved) = &resolved {
        match resolved.revert().await {
            Ok(()) => info!("systemd-resolved no longer sends names to vipd"),
            Err(e) => warn!("{e:#}"),
        }
    }
    ended?;
    // Mappings stay in the kernel: connections outlive the daemon, and a restart adopts them.
    info!("stopping; kernel mappings are left in place");
    Ok(())
}

fn flatten(r: Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    r.map_err(anyhow::Error::from).and_then(|r| r)
}

/// Tries of the first dynamic update when the server does not answer.
const STARTUP_UPDATE_TRIES: u32 = 5;

/// The negotiation and control socket. Its receive buffer is large: after a move, the
/// acks of every partner arrive at once (the default 208 KiB dropped most of 500), and
/// under a flood the reader stalls now and then (1 MiB overflowed in a loaded emulated VM,
/// 4 MiB did not).
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
    let vip = Partners::default().fresh_vip(range, &mut rand::random::<u64>);
    std::fs::write(path, format!("{vip}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(vip)
}

/// ESP as configured. On: the vip device must pass through XFRM; every pair the kernel
/// maps keeps (or gets) its policies, so none of them sends in clear, whether or not this
/// run adopted it (a pair without SAs is then dropped until a session keys it); what an
/// earlier run left for pairs the kernel no longer maps goes. Off: everything ESP of ours
/// goes.
async fn start_esp(
    config: &Config,
    kernel: kernel::Kernel,
    home_vip: Ipv4Addr,
) -> Result<kernel::Kernel> {
    match config.ipsec.mode {
        IpsecMode::Required => {
            xfrm::require_xfrm_on(&config.device)?;
            let esp = xfrm::Esp::open(config.ipsec.sa_lifetime_secs)?;
            let mapped: Vec<_> = kernel
                .mappings()
                .await?
                .iter()
                .map(|m| (m.spec.local_vip.unwrap_or(home_vip), m.spec.peer_vip))
                .collect();
            esp.clean_up(&mapped)
                .await
                .context("cannot clean up ESP state left by an earlier run")?;
            for &(local_vip, peer_vip) in &mapped {
                esp.prepare(local_vip, peer_vip, None)
                    .await
                    .with_context(|| format!("cannot require ESP with {peer_vip}"))?;
            }
            info!(
                aes_hardware = xfrm::aes_hardware(),
                "pairs are ESP between VIPs"
            );
            Ok(kernel.with_esp(esp))
        }
        IpsecMode::Off => {
            error!("ESP is off: VIP pairs cross the network in clear");
            match xfrm::Esp::open(config.ipsec.sa_lifetime_secs) {
                Ok(esp) => esp.clean_up(&[]).await?,
                Err(e) => tracing::debug!("no XFRM to clean up: {e:#}"),
            }
            Ok(kernel)
        }
    }
}

/// The partners saved by a previous run whose mappings the kernel still holds (the daemon
/// was restarted, the host was not); after a reboot the table starts empty
/// (reclaim-on-reboot, paper section 4.1.2).
async fn recover_partners(path: &Path, kernel: &kernel::Kernel, home_vip: Ipv4Addr) -> Partners {
    let mut partners = Partners::new(home_vip);
    let Some(saved) = state::load_partners(path) else {
        return partners;
    };
    let mappings = match kernel.mappings().await {
        Ok(m) => m,
        Err(e) => {
            warn!("cannot read the kernel table: {e:#}");
            return partners;
        }
    };
    for partner in saved.iter() {
        let live = mappings.iter().any(|m| {
            m.spec.peer_vip == partner.peer_vip && m.spec.local_vip == Some(partner.local_vip)
        });
        if live {
            partners.insert(partner.clone());
        }
    }
    if !partners.is_empty() {
        info!(
            partners = partners.len(),
            "recovered partners from the kernel table"
        );
    }
    partners
}
