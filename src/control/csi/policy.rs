//! The node operator's caps on what pods may ask for, and the volume a publish gets once
//! they (and the pod's own cgroup limits) are applied. Pod authors choose attributes; the
//! node decides: a limit above the cap is lowered to it, as kubelet lowers a Memory
//! emptyDir's tmpfs to the pod's memory limit.

use super::error::{Code, CsiResult, err, invalid_argument};
use super::request::Asked;
use crate::control::volume::spec::{MediumKind, VolumeMedium, VolumeSpec};
use crate::quantity::format_binary;

/// The operator's flags.
#[derive(Clone, Debug)]
pub struct Policy {
    pub allowed_media: Vec<MediumKind>,
    /// No volume's size limit is above this.
    pub max_size_limit: Option<u64>,
    /// The size limit of a volume that gives none (a Memory volume without either gets the
    /// pod's memory limit, or half of the node's memory as tmpfs).
    pub default_size_limit: Option<u64>,
    pub max_inode_limit: Option<u64>,
    pub default_inode_limit: Option<u64>,
}

/// What the pod's cgroup says of its limits (`None`: unlimited or unknown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PodLimits {
    pub memory: Option<u64>,
    /// Huge pages of the volume's page size, in bytes.
    pub hugepages: Option<u64>,
}

fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

impl Policy {
    /// The medium resolved (a huge page size the kernel offers), refused if the operator
    /// does not allow it.
    pub fn medium(&self, asked: &Asked) -> CsiResult<VolumeMedium> {
        let kind = asked.medium.kind();
        if !self.allowed_media.contains(&kind) {
            return Err(invalid_argument(format!(
                "medium {kind:?} is not allowed on this node (allowed: {:?})",
                self.allowed_media
            )));
        }
        Ok(asked.medium.resolve(asked.size_limit)?)
    }

    /// The volume a publish gets: the asked limits, or the defaults, lowered to the caps
    /// and to the pod's limits for its medium.
    pub fn spec(
        &self,
        asked: &Asked,
        medium: VolumeMedium,
        pod: PodLimits,
    ) -> CsiResult<VolumeSpec> {
        let wanted = asked.size_limit.or(self.default_size_limit);
        let size_limit = match medium {
            VolumeMedium::Disk => min(wanted, self.max_size_limit),
            VolumeMedium::Memory => {
                let size = wanted
                    .or(pod.memory)
                    .unwrap_or_else(crate::common::default_size_limit);
                min(min(Some(size), pod.memory), self.max_size_limit)
            }
            VolumeMedium::HugePages(page) => {
                // hugetlbfs sizes are whole pages: a cap rounds down to one.
                let capped = min(min(wanted, self.max_size_limit), pod.hugepages);
                match capped.map(|n| n / page * page) {
                    Some(0) => {
                        return Err(err(
                            Code::ResourceExhausted,
                            format!(
                                "no whole {} huge page fits under this node's caps and the pod's hugepages limit",
                                format_binary(page)
                            ),
                        ));
                    }
                    c => c,
                }
            }
        };
        let inode_limit = min(
            asked.inode_limit.or(self.default_inode_limit),
            self.max_inode_limit,
        );
        Ok(VolumeSpec {
            medium,
            size_limit,
            inode_limit,
            fs_group: asked.fs_group,
            sticky: asked.sticky,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::volume::spec::MediumArg;

    fn policy() -> Policy {
        Policy {
            allowed_media: vec![MediumKind::Disk, MediumKind::Memory],
            max_size_limit: Some(10 << 30),
            default_size_limit: Some(1 << 30),
            max_inode_limit: Some(1_000_000),
            default_inode_limit: None,
        }
    }

    fn asked(medium: MediumArg, size: Option<u64>) -> Asked {
        Asked {
            medium,
            size_limit: size,
            inode_limit: None,
            sticky: false,
            fs_group: None,
        }
    }

    #[test]
    fn limits_are_the_asked_ones_lowered_to_the_caps() {
        let p = policy();
        let none = PodLimits::default();
        let disk = |size| {
            p.spec(&asked(MediumArg::Disk, size), VolumeMedium::Disk, none)
                .unwrap()
        };
        assert_eq!(disk(Some(5 << 30)).size_limit, Some(5 << 30));
        assert_eq!(disk(Some(50 << 30)).size_limit, Some(10 << 30), "capped");
        assert_eq!(disk(None).size_limit, Some(1 << 30), "the default");
        assert_eq!(disk(None).inode_limit, Some(1_000_000), "the inode cap");
    }

    #[test]
    fn memory_is_also_capped_by_the_pods_memory_limit() {
        let p = policy();
        let pod = PodLimits {
            memory: Some(256 << 20),
            hugepages: None,
        };
        let mem = |size| {
            p.spec(&asked(MediumArg::Memory, size), VolumeMedium::Memory, pod)
                .unwrap()
                .size_limit
        };
        assert_eq!(mem(Some(1 << 30)), Some(256 << 20));
        assert_eq!(mem(Some(64 << 20)), Some(64 << 20));
        let no_default = Policy {
            default_size_limit: None,
            ..policy()
        };
        let s = no_default
            .spec(&asked(MediumArg::Memory, None), VolumeMedium::Memory, pod)
            .unwrap();
        assert_eq!(
            s.size_limit,
            Some(256 << 20),
            "the pod's limit, as kubelet's tmpfs"
        );
    }

    #[test]
    fn forbidden_media_and_huge_pages_below_one_page() {
        let p = policy();
        let e = p
            .medium(&asked(MediumArg::HugePages(Some(2 << 20)), None))
            .unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert!(e.message.contains("HugePages"), "{e}");
        let pod = PodLimits {
            memory: None,
            hugepages: Some(3 << 20),
        };
        let page = 2 << 20;
        let s = p
            .spec(
                &asked(MediumArg::HugePages(Some(page)), Some(8 << 20)),
                VolumeMedium::HugePages(page),
                pod,
            )
            .unwrap();
        assert_eq!(s.size_limit, Some(2 << 20), "rounded down to whole pages");
        let tiny = PodLimits {
            memory: None,
            hugepages: Some(1 << 20),
        };
        let e = p
            .spec(
                &asked(MediumArg::HugePages(Some(page)), Some(8 << 20)),
                VolumeMedium::HugePages(page),
                tiny,
            )
            .unwrap_err();
        assert_eq!(e.code, Code::ResourceExhausted);
    }
}
