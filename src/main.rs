//! The `emptydirfs` binary: parses the command line and runs one command.

#![deny(clippy::undocumented_unsafe_blocks)]

use clap::Parser;
use emptydirfs::cli::{Cli, Command};
use emptydirfs::control::emptydir::{setup, status, teardown};
use emptydirfs::control::volume::lifecycle::Upgraded;
use emptydirfs::error::Failure;
use std::time::Duration;

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => emptydirfs::daemon::serve(args),
        Command::Setup(args) => setup::setup(&args.request()).map(|outcome| match outcome {
            setup::Outcome::AlreadyServing(path) => println!("{}", path.display()),
            setup::Outcome::Started(path, note) => {
                if let Some(note) = note {
                    eprintln!("emptydirfs: volume {}: {note}", args.volume);
                }
                println!("{}", path.display());
            }
        }),
        Command::Teardown(args) => teardown::teardown(
            &args.kubelet_root,
            &args.pod_uid,
            &args.volume,
            Duration::from_secs(args.grace),
        ),
        Command::Status(args) => show_status(args),
        Command::Csi(args) => emptydirfs::control::csi::run(&args.options()),
        Command::Upgrade(args) => emptydirfs::control::emptydir::upgrade::upgrade(
            &args.kubelet_root,
            &args.pod_uid,
            &args.volume,
        )
        .map(|done| match done {
            Upgraded::HandedOff(pid) => {
                println!("volume {}: served by daemon {pid} now", args.volume)
            }
            Upgraded::KernelServed => println!(
                "volume {}: hugetlbfs, served by the kernel: nothing to hand off",
                args.volume
            ),
        }),
    };
    if let Err(failure) = result {
        eprintln!("emptydirfs: error: {failure}");
        std::process::exit(failure.exit_code());
    }
}

fn show_status(args: &emptydirfs::cli::StatusArgs) -> Result<(), Failure> {
    let volumes = status::status(&args.kubelet_root, args.pod_uid.as_deref())?;
    if args.json {
        print!("{}", status::render_json(&volumes));
    } else {
        print!("{}", status::render_table(&volumes));
    }
    Ok(())
}
