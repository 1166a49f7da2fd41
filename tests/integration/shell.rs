//! The volume used as people and programs use it: ls, stat, df, du, cp -a, tar, sort -T,
//! git
//! (fio with verification is in `conformance.rs`).

use crate::harness::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// A small tree with data, a symlink, a hard link, odd modes, old times and an xattr.
fn make_tree(dir: &std::path::Path) {
    sh(&format!(
        "cd {} && mkdir -p src/a/b && head -c 300000 /dev/urandom > src/a/blob && echo hi > src/a/b/small \
         && ln -s ../blob src/a/b/link && ln src/a/blob src/hard && chmod 0640 src/a/blob && chmod 0711 src/a \
         && touch -d '2001-02-03 04:05:06.789' src/a/b/small && setfattr -n user.tag -v treasure src/a/b/small",
        dir.display()
    ));
}

fn cp_a_and_tar_round_trip(m: Medium) {
    let v = Volume::start(m, &[]);
    make_tree(&v.mnt);
    // cp -a preserves modes, times, links and xattrs; diff sees the same content.
    sh(&format!(
        "cd {} && cp -a src copy && diff -r src copy",
        v.mnt.display()
    ));
    let stat = |p: &str| sh(&format!("stat -c '%a %s %h %y' {}", v.path(p).display()));
    assert_eq!(stat("src/a/b/small"), stat("copy/a/b/small"));
    assert_eq!(stat("src/a/blob"), stat("copy/a/blob"));
    assert_eq!(
        sh(&format!(
            "getfattr --only-values -n user.tag {}",
            v.path("copy/a/b/small").display()
        )),
        "treasure"
    );
    assert_eq!(
        fs::read_link(v.path("copy/a/b/link")).unwrap(),
        std::path::Path::new("../blob")
    );
    // tar out of the volume and back in.
    sh(&format!(
        "cd {0} && tar --xattrs -cf archive.tar src && mkdir out && tar --xattrs -xf archive.tar -C out && diff -r src out/src",
        v.mnt.display()
    ));
    assert_eq!(stat("src/a/b/small"), stat("out/src/a/b/small"));
}

fn ls_stat_df_du_as_people_use_them(m: Medium) {
    let v = Volume::start(m, &[]);
    fs::write(v.path("file"), vec![7; 1 << 20]).unwrap();
    let ls = sh(&format!("ls -l {}", v.mnt.display()));
    assert!(
        ls.contains("-rw-r--r-- 1 root root 1048576") && ls.contains(" file"),
        "{ls}"
    );
    let stat = sh(&format!(
        "stat -c '%s %b %B %F' {}",
        v.path("file").display()
    ));
    assert_eq!(stat.trim(), "1048576 2048 512 regular file");
    // du through the mount, df and (for disk) du of the backing directory agree exactly;
    // a disk volume's directories hold blocks as on any disk filesystem.
    let du = du_bytes(&v.mnt);
    let dirs = if m == Medium::Disk { 4096 } else { 0 };
    assert_eq!(du, (1 << 20) + dirs);
    assert_eq!(v.used(), du);
    v.assert_counters_match_backing();
    let df = sh(&format!("df -h {}", v.mnt.display()));
    let row: Vec<&str> = df.lines().nth(1).unwrap().split_whitespace().collect();
    let source = format!("emptydirfs-{}", m.name());
    assert_eq!(&row[..2], [source.as_str(), "64M"], "{df}");
}

/// `sort -T` in the volume, with a buffer far smaller than its input, so it spills its
/// runs there: shown by the same sort failing when it may not create files in that
/// directory, and succeeding (sorted right) when it may.
fn sort_spills_to_the_volume(m: Medium) {
    let v = Volume::start(m, &[]);
    let view = crate::kubelet::View::of(&v.mnt);
    let tmp = TempDir::new("sort");
    let input = tmp.path().join("input");
    sh(&format!(
        "seq 1 400000 | shuf --random-source=/dev/zero > {0} && chmod 0644 {0}",
        input.display()
    ));
    std::os::unix::fs::chown(tmp.path(), Some(1000), Some(1000)).unwrap();
    fs::create_dir(v.path("tmp")).unwrap();
    std::os::unix::fs::chown(v.path("tmp"), Some(1000), Some(1000)).unwrap();
    // A 64 KiB buffer for ~2.7 MB of lines: sort must spill runs into the volume.
    let sort = format!(
        "sort -n -S 64K -T {0}/tmp {1} > {2}/sorted",
        view.path.display(),
        input.display(),
        tmp.path().display()
    );
    fs::set_permissions(v.path("tmp"), fs::Permissions::from_mode(0o500)).unwrap();
    let out = sh_as(1000, 1000, &sort);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("tmp"),
        "sort needs its temporary directory in the volume: {out:?}"
    );
    fs::set_permissions(v.path("tmp"), fs::Permissions::from_mode(0o700)).unwrap();
    let out = sh_as(1000, 1000, &sort);
    assert!(out.status.success(), "{out:?}");
    sh(&format!(
        "seq 1 400000 | cmp - {}/sorted",
        tmp.path().display()
    ));
    assert_eq!(
        fs::read_dir(v.path("tmp")).unwrap().count(),
        0,
        "sort removed its runs"
    );
}

/// git clones a repository with history into the volume, checks it out, and fsck finds
/// every object intact; a commit made in the volume is readable from a fresh clone.
fn git_clone_and_fsck(m: Medium) {
    let v = Volume::start(m, &["--size-limit", "256Mi"]);
    let src = TempDir::new("git-src");
    let git = |dir: &std::path::Path, args: &str| {
        sh(&format!(
            "cd {} && git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main {args}",
            dir.display()
        ))
    };
    git(src.path(), "init -q");
    for i in 0..40 {
        fs::write(
            src.path().join(format!("f{}", i % 7)),
            format!("{i}\n").repeat(500 * i),
        )
        .unwrap();
        git(
            src.path(),
            &format!("add -A && git -c user.name=t -c user.email=t@example.com commit -qm c{i}"),
        );
    }
    git(&v.mnt, &format!("clone -q {} repo", src.path().display()));
    let repo = v.path("repo");
    git(&repo, "fsck --full --strict");
    git(&repo, "gc -q --aggressive && git fsck --full --strict");
    assert_eq!(git(&repo, "rev-list --count HEAD").trim(), "40");
    fs::write(repo.join("new"), b"made in the volume").unwrap();
    git(
        &repo,
        "add new && git -c user.name=t -c user.email=t@example.com commit -qm new",
    );
    let back = TempDir::new("git-back");
    git(back.path(), &format!("clone -q {} again", repo.display()));
    assert_eq!(
        fs::read(back.path().join("again/new")).unwrap(),
        b"made in the volume"
    );
    v.assert_counters_match_backing();
}

on_every_medium!(
    cp_a_and_tar_round_trip,
    ls_stat_df_du_as_people_use_them,
    sort_spills_to_the_volume,
    git_clone_and_fsck,
);
