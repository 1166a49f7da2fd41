//! Command-line interface: the arguments of each command.

use crate::quantity;
use crate::serve::{Medium, ServeOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "emptydirfs",
    version,
    about = "FUSE filesystem for Kubernetes emptyDir volumes with hard limits"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mount one volume at MOUNTPOINT and serve it in the foreground until SIGTERM/SIGINT.
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Where the volume's data lives.
    #[arg(long, value_enum)]
    pub medium: Medium,
    /// The directory a disk volume serves (its data stays there across restarts).
    #[arg(long, value_name = "DIR", required_if_eq("medium", "disk"))]
    pub backing: Option<PathBuf>,
    /// Hard size limit, a Kubernetes quantity (64Mi, 1Gi, 500M, 1e9); default: half of RAM (memory), none of its own (disk).
    #[arg(long, value_name = "QUANTITY", allow_hyphen_values = true, value_parser = quantity::parse_positive)]
    pub size_limit: Option<u64>,
    /// Hard limit on files, directories and other inodes; default: as tmpfs, RAM pages / 2 (memory), the backing filesystem's (disk).
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = quantity::parse_positive)]
    pub inode_limit: Option<u64>,
    /// Threads serving requests; default: one per CPU, between 2 and 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// An existing, empty directory that is not a mount point.
    pub mountpoint: PathBuf,
}

impl ServeArgs {
    pub fn options(&self) -> ServeOptions {
        ServeOptions {
            medium: self.medium,
            mountpoint: self.mountpoint.clone(),
            backing: self.backing.clone(),
            size_limit: self.size_limit,
            inode_limit: self.inode_limit,
            threads: self.threads.map(usize::from),
        }
    }
}
