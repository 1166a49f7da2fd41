//! What a volume is: its medium, limits and root ownership, as `setup` was asked for them,
//! and the `volume.conf` file that keeps them in the meta dir.
//!
//! The file is a few `key=value` lines, written whole to a temporary name and renamed, so
//! a reader sees the old file or the new one. `setup` compares a request with it: the
//! same request is a no-op, a different one is refused (limits cannot change under a
//! running pod).

use super::{hugepages, kv};
use crate::error::Failure;
use crate::quantity;
use std::fmt;
use std::io;
use std::path::Path;

/// A medium as Kubernetes spells it, as given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediumArg {
    /// `""`: the node's disk.
    Disk,
    /// `Memory`.
    Memory,
    /// `HugePages` (`None`: the kernel's default huge page size) or `HugePages-<size>`.
    HugePages(Option<u64>),
}

impl MediumArg {
    /// The medium resolved: a huge page size the kernel offers, which the size limit is a
    /// whole number of (the one conversion from what was asked to what runs).
    pub fn resolve(self, size_limit: Option<u64>) -> Result<VolumeMedium, Failure> {
        Ok(match self {
            MediumArg::Disk => VolumeMedium::Disk,
            MediumArg::Memory => VolumeMedium::Memory,
            MediumArg::HugePages(page) => {
                VolumeMedium::HugePages(hugepages::resolve(page, size_limit)?)
            }
        })
    }

    /// Its kind, as the operator allows or forbids it.
    pub fn kind(self) -> MediumKind {
        match self {
            MediumArg::Disk => MediumKind::Disk,
            MediumArg::Memory => MediumKind::Memory,
            MediumArg::HugePages(_) => MediumKind::HugePages,
        }
    }
}

/// A medium as the operator allows or forbids it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MediumKind {
    /// `""`: the node's disk.
    Disk,
    /// `Memory`.
    #[value(name = "Memory")]
    Memory,
    /// `HugePages` of any size.
    #[value(name = "HugePages")]
    HugePages,
}

/// Parses `""`, `Memory`, `HugePages`, `HugePages-2Mi`, `HugePages-1Gi`, ...
pub fn parse_medium(text: &str) -> Result<MediumArg, String> {
    match text {
        "" => Ok(MediumArg::Disk),
        "Memory" => Ok(MediumArg::Memory),
        "HugePages" => Ok(MediumArg::HugePages(None)),
        _ => match text.strip_prefix("HugePages-") {
            Some(size) => match quantity::parse(size) {
                Ok(n) if n > 0 => Ok(MediumArg::HugePages(Some(n))),
                _ => Err(format!(
                    "unknown storage medium {text:?}: a huge page size such as HugePages-2Mi or HugePages-1Gi"
                )),
            },
            None => Err(format!(
                "unknown storage medium {text:?}: use \"\" (the node's disk), Memory, HugePages, HugePages-2Mi or HugePages-1Gi"
            )),
        },
    }
}

/// A medium with its huge page size resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VolumeMedium {
    Disk,
    Memory,
    /// hugetlbfs with this page size in bytes.
    HugePages(u64),
}

impl VolumeMedium {
    /// As Kubernetes writes it (`""` for disk).
    pub fn kubernetes_name(self) -> String {
        match self {
            VolumeMedium::Disk => String::new(),
            VolumeMedium::Memory => "Memory".into(),
            VolumeMedium::HugePages(p) => format!("HugePages-{}", quantity::format_binary(p)),
        }
    }

    fn parse_resolved(text: &str) -> Option<VolumeMedium> {
        match parse_medium(text).ok()? {
            MediumArg::Disk => Some(VolumeMedium::Disk),
            MediumArg::Memory => Some(VolumeMedium::Memory),
            MediumArg::HugePages(p) => p.map(VolumeMedium::HugePages),
        }
    }
}

impl fmt::Display for VolumeMedium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VolumeMedium::Disk => f.write_str("\"\" (disk)"),
            m => f.write_str(&m.kubernetes_name()),
        }
    }
}

/// Everything `setup` was asked for, with defaults resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeSpec {
    pub medium: VolumeMedium,
    pub size_limit: Option<u64>,
    pub inode_limit: Option<u64>,
    pub fs_group: Option<u32>,
    pub sticky: bool,
}

impl VolumeSpec {
    /// The root's mode: 0777, with the sticky bit if asked, with setgid under an fsGroup.
    pub fn root_mode(&self) -> u32 {
        let sticky = if self.sticky { 0o1000 } else { 0 };
        let setgid = if self.fs_group.is_some() { 0o2000 } else { 0 };
        0o777 | sticky | setgid
    }

    /// One line for messages: `medium Memory, size limit 64Mi, no inode limit, ...`.
    pub fn describe(&self) -> String {
        let opt = |v: Option<u64>, what: &str| match v {
            Some(n) => format!("{what} {}", quantity::format_binary(n)),
            None => format!("no {what}"),
        };
        let mut s = format!(
            "medium {}, {}, {}",
            self.medium,
            opt(self.size_limit, "size limit"),
            opt(self.inode_limit, "inode limit")
        );
        if let Some(g) = self.fs_group {
            s += &format!(", fsGroup {g}");
        }
        if self.sticky {
            s += ", sticky";
        }
        s
    }

    /// The spec as `key=value` pairs (also the first keys of a CSI volume record).
    pub fn to_map(&self) -> kv::Map {
        let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let mut m = kv::Map::new();
        m.insert("medium".into(), self.medium.kubernetes_name());
        m.insert("size-limit".into(), opt(self.size_limit));
        m.insert("inode-limit".into(), opt(self.inode_limit));
        m.insert("fs-group".into(), opt(self.fs_group.map(u64::from)));
        m.insert("sticky".into(), self.sticky.to_string());
        m
    }

    /// The spec from the keys [`VolumeSpec::to_map`] writes (other keys are ignored);
    /// `None` if one is missing or malformed.
    pub fn from_map(m: &kv::Map) -> Option<VolumeSpec> {
        let num = |key: &str| -> Option<Option<u64>> {
            let v = m.get(key)?;
            if v.is_empty() {
                Some(None)
            } else {
                v.parse().ok().map(Some)
            }
        };
        Some(VolumeSpec {
            medium: VolumeMedium::parse_resolved(m.get("medium")?)?,
            size_limit: num("size-limit")?,
            inode_limit: num("inode-limit")?,
            fs_group: match num("fs-group")? {
                Some(g) => Some(u32::try_from(g).ok()?),
                None => None,
            },
            sticky: m.get("sticky")?.parse().ok()?,
        })
    }

    /// Reads `volume.conf`; `Ok(None)` if there is none.
    pub fn read(path: &Path) -> io::Result<Option<VolumeSpec>> {
        let Some(map) = kv::read(path)? else {
            return Ok(None);
        };
        let known = ["medium", "size-limit", "inode-limit", "fs-group", "sticky"];
        match VolumeSpec::from_map(&map) {
            Some(spec) if map.keys().all(|k| known.contains(&k.as_str())) => Ok(Some(spec)),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is malformed", path.display()),
            )),
        }
    }

    /// Writes `volume.conf` atomically.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        kv::write(path, "emptydirfs: what setup was asked for", &self.to_map())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_as_kubernetes_spells_them() {
        assert_eq!(parse_medium(""), Ok(MediumArg::Disk));
        assert_eq!(parse_medium("Memory"), Ok(MediumArg::Memory));
        assert_eq!(parse_medium("HugePages"), Ok(MediumArg::HugePages(None)));
        assert_eq!(
            parse_medium("HugePages-2Mi"),
            Ok(MediumArg::HugePages(Some(2 << 20)))
        );
        for bad in [
            "memory",
            "Disk",
            "HugePages-",
            "HugePages-0",
            "HugePages-12Zi",
            "tmpfs",
        ] {
            assert!(
                parse_medium(bad).unwrap_err().contains(&format!("{bad:?}")),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_file_round_trips() {
        for spec in [
            VolumeSpec {
                medium: VolumeMedium::Disk,
                size_limit: None,
                inode_limit: None,
                fs_group: None,
                sticky: false,
            },
            VolumeSpec {
                medium: VolumeMedium::HugePages(2 << 20),
                size_limit: Some(8 << 20),
                inode_limit: Some(7),
                fs_group: Some(4242),
                sticky: true,
            },
        ] {
            assert_eq!(VolumeSpec::from_map(&spec.to_map()), Some(spec.clone()));
        }
        let map = |text: &str| -> kv::Map {
            text.lines()
                .map(|l| l.split_once('=').unwrap())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            VolumeSpec::from_map(&map("medium=Memory")),
            None,
            "missing keys"
        );
        assert_eq!(
            VolumeSpec::from_map(&map(
                "medium=Memory\nsize-limit=x\ninode-limit=\nfs-group=\nsticky=false"
            )),
            None
        );
    }

    #[test]
    fn root_modes_are_kubelets() {
        let mut s = VolumeSpec {
            medium: VolumeMedium::Memory,
            size_limit: None,
            inode_limit: None,
            fs_group: None,
            sticky: false,
        };
        assert_eq!(s.root_mode(), 0o777);
        s.sticky = true;
        assert_eq!(s.root_mode(), 0o1777);
        s.fs_group = Some(5);
        assert_eq!(s.root_mode(), 0o3777);
    }
}
