//! The `emptydirfs` binary: parses the command line and runs one command.

use clap::Parser;
use emptydirfs::cli::{Cli, Command};

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => emptydirfs::serve::serve(&args.options()),
    };
    if let Err(failure) = result {
        eprintln!("emptydirfs: error: {failure}");
        std::process::exit(failure.exit_code());
    }
}
