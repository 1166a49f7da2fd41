//! The `serve` command line, owned here alone: the control side builds it
//! ([`ServeArgs::to_args`]) to start a daemon, the daemon parses it (clap), and an
//! upgrade reads a running daemon's back from `/proc` ([`ServeArgs::parse`]) to start its
//! successor with the same one.

use crate::quantity;
use std::path::PathBuf;

/// The media `serve` can back a volume with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Medium {
    /// An in-memory inode table (Kubernetes medium `Memory`).
    Memory,
    /// A backing directory on the node's disk (Kubernetes medium `""`), given by `--backing`.
    Disk,
}

impl Medium {
    /// As the command line and a daemon's state spell it.
    pub fn name(self) -> &'static str {
        match self {
            Medium::Memory => "memory",
            Medium::Disk => "disk",
        }
    }
}

/// The root's mode when none is given: every pod user may write, as kubelet's emptyDir.
pub const DEFAULT_ROOT_MODE: u32 = 0o777;

fn parse_mode(text: &str) -> Result<u32, String> {
    match u32::from_str_radix(text, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!(
            "invalid mode {text:?}: an octal mode from 0 to 7777, such as 777 or 2777"
        )),
    }
}

#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
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
    /// The mode of the volume's root, in octal, set when the volume is mounted (kubelet's
    /// emptyDir: 777; with the sticky bit 1777; with an fsGroup 2777).
    #[arg(long, value_name = "OCTAL", default_value = "777", value_parser = parse_mode)]
    pub root_mode: u32,
    /// The group of the volume's root (a pod's fsGroup), set when the volume is mounted.
    #[arg(long, value_name = "GID", value_parser = clap::value_parser!(u32).range(0..u32::MAX as i64))]
    pub root_group: Option<u32>,
    /// Threads serving requests; default: one per CPU, between 2 and 8.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Write `ready` to this inherited fd once mounted, then close it (used by `setup`).
    #[arg(long, value_name = "FD", hide = true)]
    pub ready_fd: Option<i32>,
    /// Listen here (mode 0600, root only) for hand-offs to a new daemon and for status.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Take the mounted volume over from the daemon behind this control socket (used by
    /// `upgrade`); limits given must be the volume's.
    #[arg(long, value_name = "PATH", hide = true)]
    pub take_over: Option<PathBuf>,
    /// An existing directory that is not a mount point (whatever it holds is hidden
    /// while the volume is mounted).
    pub mountpoint: PathBuf,
}

/// Parses `serve`'s arguments alone (for reading a daemon's command line back).
#[derive(clap::Parser, Debug)]
#[command(no_binary_name = true)]
struct Alone {
    #[command(flatten)]
    args: ServeArgs,
}

impl ServeArgs {
    /// A daemon of `medium` for `mountpoint`, with every default.
    pub fn new(medium: Medium, mountpoint: PathBuf) -> ServeArgs {
        ServeArgs {
            medium,
            backing: None,
            size_limit: None,
            inode_limit: None,
            root_mode: DEFAULT_ROOT_MODE,
            root_group: None,
            threads: None,
            ready_fd: None,
            control_socket: None,
            take_over: None,
            mountpoint,
        }
    }

    /// The arguments after `serve`, the mount point last: what [`ServeArgs::parse`]
    /// reads back as the same value.
    pub fn to_args(&self) -> Vec<String> {
        let mut a: Vec<String> = vec!["--medium".into(), self.medium.name().into()];
        let mut opt = |name: &str, v: Option<String>| {
            if let Some(v) = v {
                a.push(name.into());
                a.push(v);
            }
        };
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        opt("--backing", path(&self.backing));
        opt("--size-limit", self.size_limit.map(|n| n.to_string()));
        opt("--inode-limit", self.inode_limit.map(|n| n.to_string()));
        opt("--root-mode", Some(format!("{:o}", self.root_mode)));
        opt("--root-group", self.root_group.map(|g| g.to_string()));
        opt("--threads", self.threads.map(|n| n.to_string()));
        opt("--ready-fd", self.ready_fd.map(|n| n.to_string()));
        opt("--control-socket", path(&self.control_socket));
        opt("--take-over", path(&self.take_over));
        a.push(self.mountpoint.display().to_string());
        a
    }

    /// Parses the arguments after `serve` (a running daemon's, from `/proc`).
    pub fn parse<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<ServeArgs, String> {
        use clap::Parser;
        Alone::try_parse_from(args.iter().map(AsRef::as_ref))
            .map(|a| a.args)
            .map_err(|e| e.to_string())
    }

    /// The command line of this daemon's successor: the same, but what belonged to this
    /// daemon's own start (its ready fd, whom it took over from).
    pub fn successor(&self, take_over: PathBuf) -> ServeArgs {
        ServeArgs {
            ready_fd: None,
            take_over: Some(take_over),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_line_reads_back_as_itself() {
        let mut a = ServeArgs::new(Medium::Memory, "/mnt/a b".into());
        assert_eq!(ServeArgs::parse(&a.to_args()), Ok(a.clone()));
        a.medium = Medium::Disk;
        a.backing = Some("/var/data".into());
        a.size_limit = Some(64 << 20);
        a.inode_limit = Some(1000);
        a.root_mode = 0o2777;
        a.root_group = Some(4242);
        a.threads = Some(3);
        a.ready_fd = Some(3);
        a.control_socket = Some("/run/c.sock".into());
        a.take_over = Some("/run/old.sock".into());
        assert_eq!(ServeArgs::parse(&a.to_args()), Ok(a.clone()));
        let s = a.successor("/run/new.sock".into());
        assert_eq!(
            (s.ready_fd, s.take_over),
            (None, Some("/run/new.sock".into()))
        );
    }

    #[test]
    fn modes_are_octal_and_bounded() {
        assert_eq!(parse_mode("2777"), Ok(0o2777));
        assert!(parse_mode("8").is_err());
        assert!(parse_mode("17777").is_err());
    }
}
