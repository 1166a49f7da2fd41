//! The `HugePages` media: the kernel's hugetlbfs, since only the kernel can back a
//! program's `mmap` with huge pages (a FUSE file is mapped through 4 KiB page-cache pages).
//!
//! Unlike kubelet, the size limit goes to the mount as `size=`, so it is hard (an `mmap`
//! past it fails with `ENOMEM`) and `df` shows it; `nr_inodes=` bounds the inodes. The
//! pool is checked at setup, not reserved: pages are taken when a program faults them in.

use crate::error::{Failure, invalid};
use crate::quantity::format_binary;
use std::io;
use std::path::Path;

const SYSFS: &str = "/sys/kernel/mm/hugepages";
pub const FSTYPE: &str = "hugetlbfs";
pub const SOURCE: &str = "emptydirfs-hugepages";

/// The huge page sizes the kernel offers, in bytes, smallest first.
pub fn page_sizes() -> Vec<u64> {
    let mut sizes: Vec<u64> = std::fs::read_dir(SYSFS)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb = name.strip_prefix("hugepages-")?.strip_suffix("kB")?;
            kb.parse::<u64>().ok().map(|k| k * 1024)
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// The default huge page size (`Hugepagesize` in `/proc/meminfo`).
pub fn default_page_size() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("Hugepagesize:"))?;
    let kb = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kb * 1024)
}

fn pool_counter(page_size: u64, name: &str) -> u64 {
    let path = format!("{SYSFS}/hugepages-{}kB/{name}", page_size / 1024);
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Resolves and checks a huge page size (`None`: the default) against a size limit: the
/// kernel must offer the size and the limit must be a whole number of pages.
pub fn resolve(page_size: Option<u64>, size_limit: Option<u64>) -> Result<u64, Failure> {
    let offered = page_sizes();
    let list = || {
        let names: Vec<String> = offered
            .iter()
            .map(|&p| format!("HugePages-{}", format_binary(p)))
            .collect();
        if names.is_empty() {
            "none (no hugetlbfs support)".into()
        } else {
            names.join(", ")
        }
    };
    let page = match page_size.or_else(default_page_size) {
        Some(p) if offered.contains(&p) => p,
        Some(p) => {
            return Err(invalid(format!(
                "this kernel offers no {} huge pages; it offers {}",
                format_binary(p),
                list()
            )));
        }
        None => {
            return Err(invalid(format!(
                "this kernel has no huge pages; it offers {}",
                list()
            )));
        }
    };
    if let Some(limit) = size_limit
        && limit % page != 0
    {
        return Err(invalid(format!(
            "--size-limit {limit} is not a multiple of the huge page size {}; use a whole number of pages, such as {}",
            format_binary(page),
            format_binary(limit.div_ceil(page) * page)
        )));
    }
    Ok(page)
}

/// "1 page", "2 pages".
fn pages(n: u64) -> String {
    format!("{n} page{}", if n == 1 { "" } else { "s" })
}

/// Checks that the pool has the pages a new mount's limit needs, free and not reserved
/// by other mappings (checked when mounting, not for a volume already mounted).
pub fn check_pool(page: u64, size_limit: Option<u64>) -> Result<(), Failure> {
    let Some(limit) = size_limit else {
        return Ok(());
    };
    let needed = limit / page;
    let (free, reserved) = (
        pool_counter(page, "free_hugepages"),
        pool_counter(page, "resv_hugepages"),
    );
    let available = free.saturating_sub(reserved);
    if available < needed {
        let are = if available == 1 { "is" } else { "are" };
        return Err(invalid(format!(
            "the {} huge page pool is too small: the limit needs {}, {available} {are} free ({free} free, {reserved} reserved, of nr_hugepages={}); raise /sys/kernel/mm/hugepages/hugepages-{}kB/nr_hugepages",
            format_binary(page),
            pages(needed),
            pool_counter(page, "nr_hugepages"),
            page / 1024
        )));
    }
    Ok(())
}

/// Mounts hugetlbfs at `path` with the page size and limits; its root is 0777 (the caller
/// sets the volume's own mode and group afterwards).
pub fn mount(path: &Path, page: u64, size: Option<u64>, inodes: Option<u64>) -> io::Result<()> {
    let mut data = format!("pagesize={page},mode=0777");
    if let Some(s) = size {
        data += &format!(",size={s}");
    }
    if let Some(n) = inodes {
        data += &format!(",nr_inodes={n}");
    }
    crate::mounts::mount(SOURCE, path, FSTYPE, &data)
}
