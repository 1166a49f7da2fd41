//! Faults: a daemon killed under load, the node's disk filling under a disk volume.

use crate::harness::*;
use crate::kubelet::*;
use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

/// SIGKILL in the middle of an fio run: fio gets errors at once (no hang), teardown
/// leaves nothing, and setup brings a disk volume back with every fsync'ed byte and its
/// usage correct.
fn a_daemon_killed_under_load_loses_nothing_that_was_synced(m: Medium) {
    let k = KubeletRoot::new();
    let flags = ["--medium", k8s_medium(m), "--size-limit", "256Mi"];
    let v = k.setup("scratch", &flags);
    let synced: Vec<u8> = (0..8 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut f = fs::File::create(v.join("synced")).unwrap();
    f.write_all(&synced).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let job = [
        "--name=load",
        "--rw=randrw",
        "--bs=4k",
        "--size=64m",
        "--time_based",
        "--runtime=60",
    ];
    let dir = format!("--directory={}", v.display());
    // Lay the file out first, so that the kill lands in the middle of reads and writes.
    run(Command::new("fio")
        .args(job)
        .args([&dir, "--create_only=1"])
        .current_dir("/"));
    let fio = Guarded::spawn(
        Command::new("fio").args(job).arg(&dir).current_dir("/"),
        "fio",
    );
    // Beside fio, a writer appends numbered records and fsyncs each; the ones fsync
    // acknowledged before the kill must all come back.
    let records = v.join("records");
    let acked_so_far = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = acked_so_far.clone();
    let writer = std::thread::spawn(move || {
        let mut f = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(records)
            .unwrap();
        let mut acked = 0u64;
        while f.write_all(format!("{acked:08}\n").as_bytes()).is_ok() && f.sync_data().is_ok() {
            acked += 1;
            counter.store(acked, std::sync::atomic::Ordering::Relaxed);
        }
        acked
    });
    // The kill lands in the middle of fio's I/O and of the synced appends.
    eventually("records to be fsync'ed beside fio", SLOW, || {
        acked_so_far.load(std::sync::atomic::Ordering::Relaxed) > 20
    });
    let pids = k.daemons();
    assert_eq!(pids.len(), 1);
    // SAFETY: kill takes integers only; the pid is the daemon of this test's volume.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    // fio hanging on a volume whose daemon was killed fails here.
    let out = fio.wait_within(Duration::from_secs(20));
    let status = out.status;
    let acked = writer.join().unwrap();
    assert!(
        acked > 10,
        "only {acked} records were fsync'ed before the kill"
    );
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!status.success(), "fio should fail: {text}");
    assert!(
        [
            "Transport endpoint is not connected",
            "Software caused connection abort",
            "err=107",
            "err=103"
        ]
        .iter()
        .any(|e| text.contains(e)),
        "fio's error: {text}"
    );

    let out = k.run(
        &[
            &["setup", "--pod-uid", POD, "--volume", "scratch"],
            &flags[..],
        ]
        .concat(),
    );
    assert_success(&out, "setup after the crash");
    let s = k.status_json("scratch");
    assert_eq!(json_str(&s, "health"), "serving");
    match m {
        Medium::Disk => {
            assert_eq!(
                fs::read(v.join("synced")).unwrap(),
                synced,
                "fsync'ed data is intact"
            );
            let back = fs::read_to_string(v.join("records")).unwrap();
            for (i, line) in back.lines().take(acked as usize).enumerate() {
                assert_eq!(line, format!("{i:08}"), "record {i} of {acked} fsync'ed");
            }
            assert!(
                back.lines().count() as u64 >= acked,
                "{} of {acked} fsync'ed records",
                back.lines().count()
            );
            let data = k.meta_dir("scratch").join("data");
            assert_eq!(
                json_u64(&s, "used_bytes"),
                Some(du_bytes(&data)),
                "usage equals du of the data"
            );
        }
        Medium::Memory => assert_eq!(
            json_u64(&s, "used_bytes"),
            Some(0),
            "a memory volume starts empty"
        ),
    }
    assert_success(&k.teardown("scratch"), "teardown");
    k.assert_gone("scratch");
}

on_every_medium!(a_daemon_killed_under_load_loses_nothing_that_was_synced);

/// The node's disk fills while the volume is below its own limit: the writer gets ENOSPC
/// from write(2), the daemon stays up, and the volume works again once space is freed.
#[test]
fn node_disk_full_under_a_disk_volume() {
    let mut v = Volume::start(Medium::Disk, &["--size-limit", "256Mi"]);
    v.restart_after(|backing| {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=16m,mode=0777", "tmpfs"])
            .arg(backing));
    });
    let pid = v.pid();
    let mut f = fs::File::create(v.path("big")).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut written = 0u64;
    let err = loop {
        match f.write(&chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
        assert!(
            written < 64 << 20,
            "wrote {written} bytes into a 16 MiB disk"
        );
    };
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    assert!(written > 8 << 20 && written <= 16 << 20, "wrote {written}");
    drop(f);
    let st = v.statvfs();
    assert!(
        st.f_bavail * st.f_frsize < 1 << 20,
        "df Avail follows the node's disk"
    );
    assert!(
        fs::metadata(&v.mnt).is_ok() && std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the daemon is up"
    );
    assert_eq!(
        fs::read(v.path("big")).unwrap().len() as u64,
        written,
        "what write(2) acknowledged is there"
    );
    fs::remove_file(v.path("big")).unwrap();
    fs::write(v.path("again"), vec![1u8; 8 << 20]).unwrap();
    assert_eq!(fs::read(v.path("again")).unwrap(), vec![1u8; 8 << 20]);
    v.assert_counters_match_backing();
}
