//! The control socket (`vipctl peers`, `unpin`, `resolve`, `watch`, `reload`): a Unix
//! stream socket that only
//! vipd's own user may open (mode 0600; peer data, and unpinning, are an administrator's),
//! one JSON request per line and one JSON reply per line (`vip_proto::control`,
//! `docs/protocol.md`, "Control socket"). Clients are bounded in number, in request size
//! and in idle time, as the stub's TCP clients are; a watching client holds its slot
//! until it leaves, and one that reads too slowly is told how much it missed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast};
use tracing::{debug, info, warn};
use vip_proto::control::{MAX_REQUEST, Reply, Request};
use vip_proto::engine::LookupAnswer;

use crate::dns::Upstream;
use crate::driver::Handle;
use crate::reload::Reloader;

/// Clients served at once; beyond it a new connection is closed at once.
const CLIENTS: usize = 16;
/// Of those, watchers at most: the others stay free for one-shot requests.
const WATCHERS: usize = 8;
/// A client silent this long is closed.
const IDLE: Duration = Duration::from_secs(10);

/// Binds the socket at `path`, mode 0600. A socket file left by a daemon that died is
/// replaced; one that a running daemon answers on is not.
pub async fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            bail!(
                "{} is in use: is another vipd running in this namespace?",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    Ok(listener)
}

/// What answers control requests.
pub struct Control {
    pub engine: Handle,
    pub upstream: Upstream,
    /// Mapping changes as the kernel worker makes them, for `watch`.
    pub changes: broadcast::Sender<Reply>,
    /// Reads the configuration and the known-peers file again, for `reload`.
    pub reloader: Arc<Reloader>,
}

/// Serves clients forever.
pub async fn serve(control: Arc<Control>, listener: UnixListener) -> Result<()> {
    let slots = Arc::new(Semaphore::new(CLIENTS));
    let watchers = Arc::new(Semaphore::new(WATCHERS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: not a reason to end the daemon.
                warn!("control socket: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            debug!("control socket: too many clients, closing a new one");
            continue;
        };
        let (control, watchers) = (control.clone(), watchers.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_client(&control, &watchers, stream).await {
                debug!("control client: {e:#}");
            }
            drop(permit);
        });
    }
}

async fn serve_client(control: &Control, watchers: &Semaphore, stream: UnixStream) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    loop {
        let mut line = Vec::new();
        let read = tokio::time::timeout(IDLE, async {
            // At most MAX_REQUEST bytes, up to and including the newline.
            let mut limited = (&mut lines).take(MAX_REQUEST as u64 + 1);
            limited.read_until(b'\n', &mut line).await
        })
        .await;
        let Ok(read) = read else { return Ok(()) };
        if read? == 0 {
            return Ok(());
        }
        // The rest of an overlong line is unread: the connection cannot go on after it.
        let too_long = line.len() > MAX_REQUEST;
        let reply = if too_long {
            Reply::Error {
                message: format!("request longer than {MAX_REQUEST} bytes"),
            }
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Watch {}) => match watchers.try_acquire() {
                    Ok(_watching) => return watch(control, lines, write).await,
                    Err(_) => Reply::Error {
                        message: format!("{WATCHERS} clients are watching already"),
                    },
                },
                Ok(request) => answer(control, request).await,
                Err(e) => Reply::Error {
                    message: format!("bad request: {e}"),
                },
            }
        };
        send(&mut write, &reply).await?;
        if too_long {
            return Ok(());
        }
    }
}

/// Sends one reply line; a client that takes more than [`IDLE`] to read it is given up.
async fn send(write: &mut OwnedWriteHalf, reply: &Reply) -> Result<()> {
    let mut bytes = serde_json::to_vec(reply)?;
    bytes.push(b'\n');
    tokio::time::timeout(IDLE, write.write_all(&bytes))
        .await
        .map_err(|_| anyhow::anyhow!("the client does not read"))??;
    Ok(())
}

/// Streams mapping changes to the client until it goes: a write fails, or it sends
/// anything more (a watching connection takes no further requests). A client that only
/// shut down its sending side (`printf ... | socat - UNIX-CONNECT:...`) is still sent to.
async fn watch(
    control: &Control,
    mut read: BufReader<OwnedReadHalf>,
    mut write: OwnedWriteHalf,
) -> Result<()> {
    let mut changes = control.changes.subscribe();
    send(&mut write, &Reply::Watching {}).await?;
    let mut byte = [0u8; 1];
    let mut reading = true;
    loop {
        tokio::select! {
            got = read.read(&mut byte), if reading => match got {
                Ok(0) => reading = false,
                _ => return Ok(()),
            },
            change = changes.recv() => match change {
                Ok(change) => send(&mut write, &change).await?,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    send(&mut write, &Reply::Lagged { missed }).await?;
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
        }
    }
}

async fn answer(control: &Control, request: Request) -> Reply {
    match request {
        Request::Resolve {
            name,
            physical: false,
        } => match control.engine.lookup(name.clone()).await {
            LookupAnswer::Vip(vip) => Reply::Resolved {
                name,
                addresses: vec![vip],
            },
            LookupAnswer::Upstream => physical(control, name).await,
            LookupAnswer::Failed => Reply::Error {
                message: format!("the lookup of {name} failed"),
            },
        },
        Request::Resolve {
            name,
            physical: true,
        } => match control
            .engine
            .control(Request::Resolve {
                name: name.clone(),
                physical: true,
            })
            .await
        {
            // A partner: where our mapping points, which is where it really is.
            Reply::Resolved { addresses, .. } if !addresses.is_empty() => {
                Reply::Resolved { name, addresses }
            }
            _ => physical(control, name).await,
        },
        Request::Reload {} => reload(&control.reloader).await,
        request => control.engine.control(request).await,
    }
}

/// Reloads (as SIGHUP does), logs what changed and answers with it.
pub async fn reload(reloader: &Reloader) -> Reply {
    match reloader.reload().await {
        Ok(done) => {
            info!(
                pins_added = done.pins.added,
                pins_removed = done.pins.removed,
                pins_changed = done.pins.changed,
                need_restart = ?done.need_restart,
                "configuration and known peers read again"
            );
            Reply::Reloaded {
                pins: done.pins,
                need_restart: done.need_restart.iter().map(|s| s.to_string()).collect(),
            }
        }
        Err(e) => {
            warn!("reload refused, nothing changed: {e:#}");
            Reply::Error {
                message: format!("nothing changed: {e:#}"),
            }
        }
    }
}

/// `name`'s A records, from the upstream resolvers.
async fn physical(control: &Control, name: vip_proto::Fqdn) -> Reply {
    let query = Name::from_ascii(format!("{name}.")).ok();
    let Some(query) = query else {
        return Reply::Error {
            message: format!("{name} is not a DNS name"),
        };
    };
    match control
        .upstream
        .query(query, DNSClass::IN, RecordType::A)
        .await
    {
        Ok(message) => Reply::Resolved {
            name,
            addresses: message
                .answers
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
        },
        Err(e) => {
            warn!(%name, "control: upstream failed: {e:#}");
            Reply::Error {
                message: format!("DNS did not answer for {name}: {e:#}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Input;
    use std::net::Ipv4Addr;
    use tokio::io::AsyncReadExt;

    /// A control socket whose engine knows b.vip.test (VIP 240.0.0.2 at 192.0.2.20).
    async fn serving(dir: &Path) -> std::path::PathBuf {
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let (writer, _) = crate::state::Writer::start(
            dir.join("peers.json"),
            vip_proto::KnownPeers::load(&dir.join("known_peers")).unwrap(),
        );
        tokio::spawn(async move {
            while let Some(input) = rx.recv().await {
                match input {
                    Input::Lookup { reply, .. } => {
                        let _ = reply.send(LookupAnswer::Vip(Ipv4Addr::new(240, 0, 0, 2)));
                    }
                    Input::Reload { reply, .. } => {
                        // As the engine's task does: the known-peers file read now.
                        let answer = match writer.reload_pins().await {
                            Ok(pins) => Ok((
                                vec!["fqdn"],
                                vip_proto::engine::PinsReloaded {
                                    added: pins.len(),
                                    ..Default::default()
                                },
                            )),
                            Err(e) => Err(format!("the known-peers file does not load: {e:#}")),
                        };
                        let _ = reply.send(answer);
                    }
                    Input::Control { request, reply } => {
                        let answer = match request {
                            Request::Resolve { name, .. } => Reply::Resolved {
                                name,
                                addresses: vec![Ipv4Addr::new(192, 0, 2, 20)],
                            },
                            _ => Reply::Peers { peers: vec![] },
                        };
                        let _ = reply.send(answer);
                    }
                    _ => {}
                }
            }
        });
        let engine = Handle::new(tx);
        std::fs::write(dir.join("vipd.toml"), CONFIG).unwrap();
        let reloader = Arc::new(Reloader {
            path: dir.join("vipd.toml"),
            running: crate::config::Config::parse(CONFIG).unwrap(),
            home_vip: Ipv4Addr::new(240, 0, 0, 1),
            engine: engine.clone(),
            running_reload: Default::default(),
        });
        let path = dir.join("control.sock");
        let listener = bind(&path).await.unwrap();
        let control = Arc::new(Control {
            engine,
            upstream: Upstream::new(
                &["127.0.0.1:9".parse().unwrap()],
                Duration::from_millis(100),
                0,
                None,
            )
            .unwrap(),
            changes: CHANGES.with(|c| c.clone()),
            reloader,
        });
        tokio::spawn(serve(control, listener));
        path
    }

    const CONFIG: &str = "fqdn = \"a.vip.test\"\n[upstream]\nservers = [\"127.0.0.1:53\"]\n\
                          [update]\nenabled = false\n";

    #[tokio::test]
    async fn reload_reads_both_files_again_and_a_bad_one_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = serving(dir.path()).await;
        let mut c = UnixStream::connect(&path).await.unwrap();
        // An administrator adds a pin by hand and changes a setting that needs a restart.
        let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]);
        std::fs::write(
            dir.path().join("known_peers"),
            format!("b.vip.test x25519 {key}\n"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("vipd.toml"),
            format!("{CONFIG}[stub]\nvip_ttl = 17\n"),
        )
        .unwrap();
        let r = ask(&mut c, b"{\"cmd\":\"reload\"}\n").await;
        assert_eq!(
            r,
            r#"{"result":"reloaded","pins":{"added":1,"removed":0,"changed":0},"need_restart":["stub","fqdn"]}"#
        );
        std::fs::write(dir.path().join("vipd.toml"), "fqdn = 7\n").unwrap();
        let r = ask(&mut c, b"{\"cmd\":\"reload\"}\n").await;
        assert!(
            r.starts_with(r#"{"result":"error","message":"nothing changed: "#),
            "{r}"
        );
        std::fs::write(dir.path().join("vipd.toml"), CONFIG).unwrap();
        std::fs::write(
            dir.path().join("known_peers"),
            "b.vip.test x25519 nonsense\n",
        )
        .unwrap();
        let r = ask(&mut c, b"{\"cmd\":\"reload\"}\n").await;
        assert!(r.contains("known-peers file does not load"), "{r}");
    }

    thread_local! {
        /// The changes the test's control socket streams (each test has its own thread).
        static CHANGES: broadcast::Sender<Reply> = broadcast::channel(4).0;
    }

    fn change(n: u8) -> Reply {
        Reply::Change {
            change: vip_proto::control::ChangeKind::Moved,
            name: None,
            peer_vip: Ipv4Addr::new(240, 0, 0, 2),
            local_vip: Ipv4Addr::new(240, 0, 0, 1),
            address: Some(Ipv4Addr::new(192, 0, 2, n)),
        }
    }

    async fn read_line(stream: &mut UnixStream) -> String {
        let mut out = Vec::new();
        loop {
            let mut byte = [0u8];
            stream.read_exact(&mut byte).await.unwrap();
            if byte[0] == b'\n' {
                return String::from_utf8(out).unwrap();
            }
            out.push(byte[0]);
        }
    }

    #[tokio::test]
    async fn a_watcher_gets_the_changes_in_order_and_is_told_what_it_missed() {
        let dir = tempfile::tempdir().unwrap();
        let path = serving(dir.path()).await;
        let changes = CHANGES.with(|c| c.clone());
        let mut c = UnixStream::connect(&path).await.unwrap();
        assert_eq!(
            ask(&mut c, b"{\"cmd\":\"watch\"}\n").await,
            r#"{"result":"watching"}"#
        );
        changes.send(change(1)).unwrap();
        changes.send(change(2)).unwrap();
        assert!(
            read_line(&mut c)
                .await
                .ends_with(r#""address":"192.0.2.1"}"#)
        );
        assert!(
            read_line(&mut c)
                .await
                .ends_with(r#""address":"192.0.2.2"}"#)
        );
        // Idle longer than a request may take: a watcher is not closed for it.
        tokio::time::sleep(IDLE + Duration::from_millis(100)).await;
        for n in 3..=9 {
            changes.send(change(n)).unwrap();
        }
        let mut lines = Vec::new();
        for _ in 0..5 {
            lines.push(read_line(&mut c).await);
        }
        assert_eq!(lines[0], r#"{"result":"lagged","missed":3}"#, "{lines:?}");
        assert!(lines[1].ends_with(r#""address":"192.0.2.6"}"#), "{lines:?}");
        assert!(lines[4].ends_with(r#""address":"192.0.2.9"}"#), "{lines:?}");
        // A client that shut down its sending side is still sent to.
        c.shutdown().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        changes.send(change(10)).unwrap();
        assert!(
            read_line(&mut c)
                .await
                .ends_with(r#""address":"192.0.2.10"}"#)
        );
        // The watcher leaves: the next change finds it gone, and its subscription goes.
        drop(c);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = changes.send(change(11));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(changes.receiver_count(), 0);
    }

    async fn ask(stream: &mut UnixStream, line: &[u8]) -> String {
        stream.write_all(line).await.unwrap();
        read_line(stream).await
    }

    #[tokio::test]
    async fn requests_get_answers_and_bad_ones_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = serving(dir.path()).await;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut c = UnixStream::connect(&path).await.unwrap();
        let r = ask(&mut c, b"{\"cmd\":\"resolve\",\"name\":\"b.vip.test\"}\n").await;
        assert!(r.contains("\"addresses\":[\"240.0.0.2\"]"), "{r}");
        let r = ask(
            &mut c,
            b"{\"cmd\":\"resolve\",\"name\":\"b.vip.test\",\"physical\":true}\n",
        )
        .await;
        assert!(r.contains("\"addresses\":[\"192.0.2.20\"]"), "{r}");
        let r = ask(&mut c, b"{\"cmd\":\"peers\"}\n").await;
        assert_eq!(r, "{\"result\":\"peers\",\"peers\":[]}");
        let r = ask(&mut c, b"{\"cmd\":\"format-disk\"}\n").await;
        assert!(r.starts_with("{\"result\":\"error\""), "{r}");
        let mut long = vec![b'x'; MAX_REQUEST + 10];
        long.push(b'\n');
        let r = ask(&mut c, &long).await;
        assert!(r.contains("longer than"), "{r}");
    }

    #[tokio::test]
    async fn a_second_daemon_cannot_take_a_live_socket_but_a_stale_one_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = serving(dir.path()).await;
        let err = bind(&path).await.unwrap_err();
        assert!(format!("{err:#}").contains("another vipd"), "{err:#}");
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        bind(&stale).await.unwrap();
    }
}
