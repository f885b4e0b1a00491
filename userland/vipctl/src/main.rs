//! `vipctl`: inspect and configure the VIP kernel module.

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;
use std::process::ExitCode;
use vip_netlink::Client;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show the versions of vipctl and of the loaded module.
    Version,
}

#[derive(Serialize)]
struct Versions {
    vipctl: &'static str,
    module: String,
    genl_version: u32,
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Version => {
            let module = Client::connect()?.version().await?;
            let versions = Versions {
                vipctl: env!("CARGO_PKG_VERSION"),
                module: module.version,
                genl_version: module.genl_version,
            };
            if cli.json {
                println!("{}", serde_json::to_string(&versions)?);
            } else {
                println!("vipctl {}", versions.vipctl);
                println!(
                    "module {} (netlink protocol {})",
                    versions.module, versions.genl_version
                );
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
