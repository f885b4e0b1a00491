//! `vip-fuzz`: fuzzers the test VM runs against the module, compiled so that the counts the
//! reliability suite asks for (a hundred thousand netlink messages, a million packets) are
//! reachable under emulation. Each prints a JSON summary the scenario scripts check.

mod netlink;
mod packets;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "vip-fuzz",
    about = "Fuzz the vip module through netlink and packets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Random and mutated generic netlink messages to the `vip` family, in the caller's
    /// namespace, with dumps read halfway and abandoned, changes and flushes between.
    Netlink(netlink::Args),
    /// Malformed and odd IPv4/IPIP packets, as Ethernet frames on an interface, at a VIP host.
    Packets(packets::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<()> = match cli.command {
        Command::Netlink(args) => netlink::run(&args),
        Command::Packets(args) => packets::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vip-fuzz: {e:#}");
            ExitCode::FAILURE
        }
    }
}
