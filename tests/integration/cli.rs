//! The command line as an operator meets it: `serve`'s bad input, mount points and
//! signals; every command's help and refusals of bad numbers.

use crate::harness::*;
use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

fn serve(args: &[&str], mnt: &std::path::Path) -> std::process::Output {
    Command::new(BIN)
        .arg("serve")
        .args(args)
        .arg(mnt)
        .stdin(Stdio::null())
        .bounded_output()
}

#[test]
fn bad_quantities_are_refused_before_mounting() {
    let tmp = TempDir::new("cli");
    for q in ["12Zi", "-1", "1.5.2Gi", "", "0", "16Ei", "lots"] {
        let out = serve(&["--medium", "memory", "--size-limit", q], tmp.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{q:?}: {err}");
        assert!(
            err.contains(&format!("{q:?}")),
            "the message names {q:?}: {err}"
        );
        assert!(!is_mounted(tmp.path()));
    }
    let out = serve(&["--medium", "memory", "--inode-limit", "ten"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let out = serve(&["--medium", "floppy"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
    let out = serve(&["--medium", "memory", "--bogus"], tmp.path());
    assert_eq!(out.status.code(), Some(2));
}

/// Every flag of every command says what it is in `-h`: none is a bare name.
#[test]
fn every_flag_of_every_command_has_a_help_line() {
    for cmd in ["serve", "setup", "teardown", "status", "upgrade", "csi"] {
        let out = Command::new(BIN).args([cmd, "-h"]).output().unwrap();
        assert!(out.status.success(), "{cmd} -h");
        let help = String::from_utf8_lossy(&out.stdout);
        let options = help.split("Options:").nth(1).expect("an Options section");
        let flags: Vec<&str> = options
            .lines()
            .filter(|l| l.trim_start().starts_with('-'))
            .collect();
        assert!(flags.len() > 1, "{cmd}: {help}");
        for line in flags {
            // "--flag <VALUE>   What it is [default: ...]"
            let text = line
                .trim_start()
                .split_once("  ")
                .map_or("", |(_, t)| t.trim());
            assert!(
                !text.is_empty() && !text.starts_with('['),
                "{cmd}: no help for {:?}",
                line.trim()
            );
        }
    }
}

/// A negative or too large number of seconds is an invalid value that says what is
/// wanted (clap alone would take "-1" for a flag it does not know).
#[test]
fn bad_numbers_of_seconds_are_invalid_values() {
    let cases: [(&[&str], &str, &str); 5] = [
        (
            &["teardown", "--pod-uid", "p", "--volume", "v", "--grace"],
            "-1",
            "from 0 to 3600",
        ),
        (
            &["teardown", "--pod-uid", "p", "--volume", "v", "--grace"],
            "3601",
            "from 0 to 3600",
        ),
        (
            &[
                "csi",
                "--endpoint",
                "unix:///x",
                "--node-id",
                "n",
                "--stop-grace",
            ],
            "-1",
            "from 0 to 3600",
        ),
        (
            &[
                "csi",
                "--endpoint",
                "unix:///x",
                "--node-id",
                "n",
                "--orphan-grace",
            ],
            "-1",
            "seconds (0 or more)",
        ),
        (
            &["setup", "--pod-uid", "p", "--volume", "v", "--fs-group"],
            "-1",
            "not in 0..",
        ),
    ];
    for (args, value, says) in cases {
        let out = Command::new(BIN).args(args).arg(value).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {value}: {err}");
        let flag = args.last().unwrap();
        assert!(
            err.contains(&format!("invalid value '{value}' for '{flag} ")) && err.contains(says),
            "{args:?} {value}: {err}"
        );
    }
}

#[test]
fn a_ready_fd_that_is_not_an_inherited_pipe_is_refused() {
    let tmp = TempDir::new("cli");
    for fd in ["1", "2", "9", "-1", "x"] {
        let out = serve(&["--medium", "memory", "--ready-fd", fd], tmp.path());
        assert_eq!(
            out.status.code(),
            Some(2),
            "--ready-fd {fd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!is_mounted(tmp.path()), "--ready-fd {fd} mounted");
    }
    // An inherited descriptor that is a regular file, not a pipe.
    let file = fs::File::create(tmp.path().join("not-a-pipe")).unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&file);
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--medium", "memory", "--ready-fd", "9"])
        .arg(&mnt)
        .stdin(Stdio::null());
    // SAFETY: The closure runs in the child between fork and exec and calls only dup2
    // (async-signal-safe) and reads errno; `raw` is `file`'s descriptor, which the parent
    // keeps open until the child has started.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || {
            if libc::dup2(raw, 9) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        lazy_unmount(&mnt);
        panic!("serve took a regular file as its ready fd and went on serving");
    });
    assert_eq!(status.code(), Some(2));
    assert!(!is_mounted(&mnt));
    assert_eq!(
        fs::read(tmp.path().join("not-a-pipe")).unwrap(),
        b"",
        "nothing written to it"
    );
}

#[test]
fn bad_mount_points_are_refused() {
    let tmp = TempDir::new("cli");
    let missing = tmp.path().join("missing");
    let out = serve(&["--medium", "memory"], &missing);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    assert!(!missing.exists(), "nothing created");
    let file = tmp.path().join("file");
    fs::write(&file, b"keep me").unwrap();
    let out = serve(&["--medium", "memory"], &file);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    assert_eq!(fs::read(&file).unwrap(), b"keep me");
    let v = Volume::memory();
    fs::write(v.path("data"), b"still here").unwrap();
    let out = serve(&["--medium", "memory"], &v.mnt);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already a mount point"));
    assert_eq!(
        fs::read(v.path("data")).unwrap(),
        b"still here",
        "the existing volume is untouched"
    );
}

#[test]
fn sigterm_unmounts_even_with_open_files_and_a_shell_inside() {
    let mut v = Volume::memory();
    fs::write(v.path("open"), b"x").unwrap();
    let held = fs::File::open(v.path("open")).unwrap();
    let writer = fs::OpenOptions::new()
        .append(true)
        .open(v.path("open"))
        .unwrap();
    let mut shell = Command::new("sleep")
        .arg("60")
        .current_dir(&v.mnt)
        .spawn()
        .unwrap();
    let status = v.stop_with(libc::SIGTERM);
    let _ = shell.kill();
    let _ = shell.wait();
    assert_eq!(status.code(), Some(0), "{}", v.log_text());
    assert!(!is_mounted(&v.mnt), "the volume is unmounted");
    // The kernel serves a memory volume's open files itself (passthrough): once the
    // daemon is gone they do not hang, and keep nothing: the data was freed, and the
    // volume's tmpfs is full.
    let mut buf = [0u8; 1];
    let r = std::os::unix::fs::FileExt::read_at(&held, &mut buf, 0);
    assert_eq!(r.ok(), Some(0), "a file held open reads as empty");
    assert_eq!(
        errno(std::io::Write::write_all(&mut &writer, &[1u8; 8192])),
        libc::ENOSPC,
        "and its writes fail"
    );
}

#[test]
fn sigint_unmounts_and_exits_zero() {
    let mut v = Volume::memory();
    assert_eq!(v.stop_with(libc::SIGINT).code(), Some(0));
    assert!(!is_mounted(&v.mnt));
}

#[test]
fn external_unmount_ends_the_daemon() {
    let mut v = Volume::memory();
    run(Command::new("umount").arg(&v.mnt));
    let mut child = v.take_child();
    let status =
        wait_timeout(&mut child, Duration::from_secs(10)).expect("daemon exits after umount");
    assert_eq!(status.code(), Some(0));
}

/// The log says the limits as enforced, as `df` shows them: a size limit of a tenth of
/// a byte (`100m`) is one block of 4 KiB, not "1 bytes"; a disk volume without limits
/// has the backing filesystem's.
#[test]
fn the_limits_are_logged_as_enforced() {
    for (m, flags, says, size) in [
        (
            Medium::Memory,
            &["--size-limit", "100m", "--inode-limit", "10"][..],
            "4096 bytes (4 KiB), 10 inodes",
            4096,
        ),
        (
            Medium::Memory,
            &["--size-limit", "1500000"][..],
            "1503232 bytes (1468 KiB)",
            1_503_232,
        ),
        (
            Medium::Disk,
            &["--size-limit", "64Mi"][..],
            "67108864 bytes (64 MiB), the backing filesystem's inodes",
            64 << 20,
        ),
        (
            Medium::Disk,
            &[][..],
            "the backing filesystem's size, the backing filesystem's inodes",
            0,
        ),
    ] {
        let v = Volume::start_exact(m, flags);
        eventually("the daemon's serving line", SOON, || {
            v.log_text().contains("serving ")
        });
        let line = v
            .log_text()
            .lines()
            .find(|l| l.contains("serving "))
            .unwrap()
            .to_string();
        assert!(line.contains(says), "{flags:?}: wanted {says:?} in {line}");
        if size > 0 {
            let st = v.statvfs();
            assert_eq!(st.f_blocks * st.f_frsize, size, "{flags:?}: df");
        }
    }
}

#[test]
fn mount_and_df_name_the_volume() {
    let v = Volume::memory();
    let mount = run(&mut Command::new("mount"));
    let line = mount
        .lines()
        .find(|l| l.contains(&*v.mnt.to_string_lossy()))
        .unwrap();
    assert!(
        line.starts_with("emptydirfs-memory on ") && line.contains("type fuse.emptydirfs"),
        "{line}"
    );
    assert!(
        line.contains("nosuid") && line.contains("nodev") && line.contains("allow_other"),
        "{line}"
    );
    let df = run(Command::new("df").arg("-h").arg(&v.mnt));
    let row = df.lines().nth(1).unwrap();
    assert!(
        row.starts_with("emptydirfs-memory") && row.contains(" 64M "),
        "{row}"
    );
}

#[test]
fn disk_volumes_need_a_backing_directory() {
    let tmp = TempDir::new("cli");
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"keep me").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink(tmp.path(), &link).unwrap();
    let missing = tmp.path().join("missing");
    let cases: [(&[&str], &str); 5] = [
        (&["--medium", "disk"], "--backing"),
        (
            &["--medium", "memory", "--backing", "/tmp"],
            "only for --medium disk",
        ),
        (
            &["--medium", "disk", "--backing", file.to_str().unwrap()],
            "not a directory",
        ),
        (
            &["--medium", "disk", "--backing", link.to_str().unwrap()],
            "is a symlink; give the directory itself",
        ),
        (
            &["--medium", "disk", "--backing", missing.to_str().unwrap()],
            "No such file or directory (os error 2)\n",
        ),
    ];
    for (args, says) in cases {
        let out = serve(args, &mnt);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} should say {says:?}: {err}");
        assert!(!err.contains(") ("), "{args:?}: the errno once: {err}");
        assert!(!is_mounted(&mnt));
    }
    assert_eq!(fs::read(&file).unwrap(), b"keep me");
    assert!(!missing.exists(), "nothing created");
}

/// A volume's root is 0777 on every medium, as `setup` and the README say: a disk
/// volume over a plain `mkdir`-made (0755) backing directory too, and another uid can
/// write into it (through a bind mount, as a container sees it); `--root-mode` and
/// `--root-group` set it otherwise.
fn the_root_is_0777_and_writable_by_another_user(m: Medium) {
    use std::os::unix::fs::MetadataExt;
    let v = Volume::start(m, &[]);
    assert_eq!(fs::metadata(&v.mnt).unwrap().mode() & 0o7777, 0o777);
    let view = crate::kubelet::View::of(&v.mnt);
    let out = sh_as(
        1000,
        1000,
        &format!("echo mine > {}/f", view.path.display()),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::metadata(v.mnt.join("f")).unwrap().uid(), 1000);
    drop(view);
    let v = Volume::start(m, &["--root-mode", "1770", "--root-group", "4242"]);
    let root = fs::metadata(&v.mnt).unwrap();
    assert_eq!((root.mode() & 0o7777, root.gid()), (0o1770, 4242));
}

on_every_medium!(the_root_is_0777_and_writable_by_another_user);
