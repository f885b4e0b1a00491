//! `vip-esp`: keys a VIP pair with ESP by hand, one step of the exchange at a time, with
//! the library vipd will use (`vip-xfrm`). The ESP scenario (`tests/66-esp.sh`) runs the
//! steps on both ends, so that the kernel side (policies, SAs, vip.ko's encapsulation of
//! ESP, path MTU, drops) is proven before the protocol carries SPIs and derives keys.
//!
//! * `spi`: reserves the SPI of the SA that will carry the peer's packets to us; prints it.
//! * `sa`: keys one SA (inbound: the reserved SPI; outbound: the peer's SPI).
//! * `policy`: the pair's policies both ways (ESP required).
//! * `remove`: policies, then every SA of ours between the two VIPs.
//! * `list`: our SAs, one JSON object per line.
//!
//! Keys are given in base64 (36 bytes: key and salt); the scenario draws them at random.

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::{Parser, Subcommand, ValueEnum};
use vip_xfrm::{Aead, Direction, EspKey, Lifetime, Sa, Xfrm};

#[derive(Parser)]
#[command(name = "vip-esp", about = "Key a VIP pair with ESP by hand (tests)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Pair {
    /// Our VIP.
    #[arg(long)]
    local: Ipv4Addr,
    /// The peer's VIP.
    #[arg(long)]
    peer: Ipv4Addr,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dir {
    In,
    Out,
}

#[derive(Subcommand)]
enum Command {
    /// Reserve an inbound SPI; print it.
    Spi(Pair),
    /// Key one SA.
    Sa {
        #[command(flatten)]
        pair: Pair,
        #[arg(long, value_enum)]
        dir: Dir,
        #[arg(long)]
        spi: u32,
        /// 36 bytes in base64: 32 of key, 4 of salt.
        #[arg(long)]
        key: String,
        #[arg(long, default_value = "chacha20-poly1305")]
        aead: Aead,
        /// Hard lifetime in seconds (0: none).
        #[arg(long, default_value_t = 0)]
        hard: u64,
    },
    /// Install the pair's policies (ESP required both ways).
    Policy(Pair),
    /// Remove the pair's policies and SAs.
    Remove(Pair),
    /// List our SAs.
    List,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (xfrm, connection) = Xfrm::new()?;
    tokio::spawn(connection);
    match cli.command {
        Command::Spi(pair) => {
            let spi = xfrm.allocate_spi(pair.local, pair.peer).await?;
            println!("{spi}");
        }
        Command::Sa {
            pair,
            dir,
            spi,
            key,
            aead,
            hard,
        } => {
            let bytes = zeroize::Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(key.trim())
                    .context("--key is not base64")?,
            );
            let Ok(bytes) = <[u8; EspKey::LEN]>::try_from(bytes.as_slice()) else {
                bail!("--key must be {} bytes, not {}", EspKey::LEN, bytes.len());
            };
            let sa = Sa {
                local_vip: pair.local,
                peer_vip: pair.peer,
                direction: match dir {
                    Dir::In => Direction::In,
                    Dir::Out => Direction::Out,
                },
                spi,
                aead,
                key: EspKey::new(bytes),
                lifetime: Lifetime {
                    soft_secs: 0,
                    hard_secs: hard,
                },
            };
            xfrm.add_sa(&sa).await?;
        }
        Command::Policy(pair) => xfrm.add_policies(pair.local, pair.peer).await?,
        Command::Remove(pair) => xfrm.remove_pair(pair.local, pair.peer).await?,
        Command::List => {
            for sa in xfrm.states().await? {
                println!(
                    "{{\"src\":\"{}\",\"dst\":\"{}\",\"spi\":{},\"larval\":{},\"bytes\":{},\"packets\":{},\
                     \"integrity_failed\":{},\"replayed\":{},\"too_old\":{}}}",
                    sa.source,
                    sa.destination,
                    sa.spi,
                    sa.larval,
                    sa.bytes,
                    sa.packets,
                    sa.drops.integrity,
                    sa.drops.replayed,
                    sa.drops.too_old
                );
            }
        }
    }
    Ok(())
}
