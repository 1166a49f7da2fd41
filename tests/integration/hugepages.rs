//! The HugePages media: setup mounts the kernel's hugetlbfs with a hard size. Each test
//! reserves pages through `nr_hugepages` and gives them back, one test at a time on the
//! machine: nextest runs each test in a process of its own, so they take turns by an
//! `flock` of one file, not by a lock of the process.

use crate::harness::*;
use crate::kubelet::*;
use std::fs;
use std::path::Path;

const PAGE: usize = 2 << 20;
const SYSFS: &str = "/sys/kernel/mm/hugepages/hugepages-2048kB";
/// The file whose `flock` a test holds while it changes the pool.
const POOL_LOCK: &str = "/tmp/emptydirfs-tests-hugepages.lock";

fn counter(name: &str) -> u64 {
    fs::read_to_string(format!("{SYSFS}/{name}"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `pages` more 2 MiB pages in the pool while it lives; the old size restored on drop.
struct Pool {
    before: u64,
    /// Locked (`flock`) while the pool is ours; unlocked when closed.
    _one_at_a_time: fs::File,
}

impl Pool {
    fn reserve(pages: u64) -> Pool {
        let guard = fs::File::create(POOL_LOCK).unwrap();
        guard.lock().unwrap();
        let before = counter("nr_hugepages");
        let pool = Pool {
            before,
            _one_at_a_time: guard,
        };
        fs::write(
            format!("{SYSFS}/nr_hugepages"),
            (before + pages).to_string(),
        )
        .unwrap();
        assert!(
            counter("free_hugepages") >= pages,
            "the kernel could not give {pages} huge pages"
        );
        pool
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = fs::write(format!("{SYSFS}/nr_hugepages"), self.before.to_string());
    }
}

/// Maps `len` bytes of `path` shared (creating it) and fills them with `byte`.
fn map_and_fill(path: &Path, len: usize, byte: u8) -> std::io::Result<()> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)?;
    Mapping::try_of(&f, len, true)?.bytes_mut().fill(byte);
    Ok(())
}

fn map_and_read(path: &Path, len: usize) -> Vec<u8> {
    Mapping::of(&fs::File::open(path).unwrap(), len, false)
        .bytes()
        .to_vec()
}

#[test]
fn a_huge_pages_volume_is_hugetlbfs_with_a_hard_size() {
    let _pool = Pool::reserve(4);
    let free = counter("free_hugepages");
    let k = KubeletRoot::new();
    let v = k.setup(
        "huge",
        &[
            "--medium",
            "HugePages-2Mi",
            "--size-limit",
            "4Mi",
            "--fs-group",
            "4242",
        ],
    );
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let line = table
        .lines()
        .find(|l| l.contains(v.to_str().unwrap()))
        .unwrap();
    assert!(
        line.contains(" - hugetlbfs ") && line.contains("pagesize=2M"),
        "{line}"
    );
    let st = statvfs(&v);
    assert_eq!(
        (st.f_blocks * st.f_bsize, st.f_bsize),
        (4 << 20, PAGE as u64),
        "df shows the size"
    );
    let root = fs::metadata(&v).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((root.mode() & 0o7777, root.gid()), (0o2777, 4242));

    map_and_fill(&v.join("a"), 2 * PAGE, 0xab).unwrap();
    assert_eq!(map_and_read(&v.join("a"), 2 * PAGE), vec![0xab; 2 * PAGE]);
    assert_eq!(counter("free_hugepages"), free - 2, "backed by huge pages");
    let err = map_and_fill(&v.join("b"), PAGE, 1).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::ENOMEM),
        "the size is a hard limit"
    );

    let s = k.status_json("huge");
    assert_eq!(json_str(&s, "medium"), "HugePages-2Mi");
    assert_eq!(json_str(&s, "health"), "serving");
    assert_eq!(json_u64(&s, "size_limit"), Some(4 << 20));
    assert_eq!(json_u64(&s, "used_bytes"), Some(4 << 20));
    assert_eq!(json_u64(&s, "pid"), None, "no daemon");
    assert_eq!(json_str(&s, "limit_kept_by"), "hugetlbfs");
    // Plain HugePages is the default page size, here 2Mi: the same volume. Its pages are
    // in use, so the pool has none free: setting it up again still succeeds.
    assert_eq!(
        k.setup(
            "huge",
            &[
                "--medium",
                "HugePages",
                "--size-limit",
                "4Mi",
                "--fs-group",
                "4242"
            ]
        ),
        v
    );
    assert_eq!(
        map_and_read(&v.join("a"), 2 * PAGE),
        vec![0xab; 2 * PAGE],
        "untouched"
    );

    assert_success(&k.teardown("huge"), "teardown");
    k.assert_gone("huge");
    assert_eq!(
        counter("free_hugepages"),
        free,
        "the pages are back in the pool"
    );
}

#[test]
fn huge_page_requests_the_kernel_cannot_honour_are_refused() {
    let _pool = Pool::reserve(2);
    let k = KubeletRoot::new();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--medium", "HugePages-2Mi", "--size-limit", "3Mi"],
            "not a multiple of the huge page size 2Mi",
        ),
        (
            &["--medium", "HugePages-2Mi", "--size-limit", "1Ti"],
            "the limit needs 524288 pages",
        ),
        (&["--medium", "HugePages-3Mi"], "offers no 3Mi huge pages"),
        (&["--medium", "HugePages-1Gi", "--size-limit", "1Ti"], "1Gi"),
        (
            &[
                "--medium",
                "HugePages-2Mi",
                "--size-limit",
                "4Mi",
                "--inode-limit",
                "0",
            ],
            "greater than zero",
        ),
    ];
    for (flags, want) in cases {
        let out = k.run(&[&["setup", "--pod-uid", POD, "--volume", "huge"], flags].concat());
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(want),
            "{flags:?}: wanted {want:?} in {}",
            stderr(&out)
        );
        assert_eq!(
            k.entries(),
            Vec::<String>::new(),
            "{flags:?} created something"
        );
    }
}

/// A pool one page short says how many pages the limit needs and how many are free,
/// in words: "needs 1 page", "1 is free".
#[test]
fn a_pool_too_small_says_how_many_pages_in_words() {
    let k = KubeletRoot::new();
    for extra in [0, 1] {
        let _pool = Pool::reserve(extra);
        let available = counter("free_hugepages") - counter("resv_hugepages");
        let needed = available + 1;
        let limit = format!("{}Mi", 2 * needed);
        let out = k.run(&[
            "setup",
            "--pod-uid",
            POD,
            "--volume",
            "huge",
            "--medium",
            "HugePages-2Mi",
            "--size-limit",
            &limit,
        ]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let are = if available == 1 { "is" } else { "are" };
        let want = format!(
            "the limit needs {needed} page{}, {available} {are} free",
            plural(needed)
        );
        assert!(
            stderr(&out).contains(&want),
            "wanted {want:?} in {}",
            stderr(&out)
        );
        assert_eq!(k.entries(), Vec::<String>::new());
    }
}

/// Through the CSI plugin: hugetlbfs at kubelet's target, sized by `sizeLimit`; a pool
/// too small is `RESOURCE_EXHAUSTED` (kubelet tries again later) and leaves nothing.
#[test]
fn csi_hugepages_volumes_are_hugetlbfs_with_a_hard_size() {
    use crate::csi::fixture::*;
    let _pool = Pool::reserve(4);
    let node = Node::start(&[]);
    let pod = node.pod();
    let v = node.volume(&pod, "huge");
    let attrs = [("medium", "HugePages-2Mi"), ("sizeLimit", "4Mi")];
    node.client
        .publish(&publish_request(&v, &attrs, None))
        .unwrap();
    let st = statvfs(&v.target);
    assert_eq!(st.f_blocks * st.f_frsize, 4 << 20, "df shows the limit");
    map_and_fill(&v.target.join("m"), 2 * PAGE, 7).unwrap();
    let stats = node.client.stats(&v.id, &v.target).unwrap();
    assert_eq!(
        (stats.usage[0].total, stats.usage[0].used),
        (4 << 20, 4 << 20)
    );
    assert!(node.daemons().is_empty(), "the kernel serves it");
    node.client.unpublish(&v.id, &v.target).unwrap();
    node.assert_gone(&v);

    let big = node.volume(&pod, "big");
    let e = node
        .client
        .publish(&publish_request(
            &big,
            &[("medium", "HugePages-2Mi"), ("sizeLimit", "64Mi")],
            None,
        ))
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("32 pages"), "{e:?}");
    node.assert_gone(&big);
}

/// An upgrade of a HugePages volume has no daemon to replace: the kernel serves it. It
/// succeeds, says so, and leaves the mount and its data as they are.
#[test]
fn an_upgrade_of_a_huge_pages_volume_has_nothing_to_hand_off() {
    let _pool = Pool::reserve(2);
    let k = KubeletRoot::new();
    let v = k.setup(
        "huge",
        &["--medium", "HugePages-2Mi", "--size-limit", "4Mi"],
    );
    map_and_fill(&v.join("m"), PAGE, 3).unwrap();
    let out = k.run(&["upgrade", "--pod-uid", POD, "--volume", "huge"]);
    assert_success(&out, "upgrade");
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to hand off"));
    assert!(map_and_read(&v.join("m"), PAGE).iter().all(|&b| b == 3));
    assert_success(&k.teardown("huge"), "teardown");
}
