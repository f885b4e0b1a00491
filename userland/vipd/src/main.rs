//! `vipd`: the VIP daemon (DNS stub, VIP negotiation, mobility). Not written yet: this
//! binary only reserves the name and the command-line surface.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "vipd", version, about = "The VIP daemon (not implemented yet)")]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("vipd: not implemented yet; see README.md for what works today");
    ExitCode::from(2)
}
