#!/usr/bin/env bash
# Installs, as root on Debian, what the tests drive: fio (data verification), attr
# (setfattr/getfattr), acl (setfacl/getfacl), libcap2-bin (setcap/getcap), fuse3
# (fusermount3, for people unmounting by hand), util-linux (setpriv), git and PostgreSQL
# (real programs run on volumes), e2fsprogs (an ext4 the durability tests crash), bindfs
# (a backing filesystem the wedge tests stop), the conformance suites pjdfstest and fsx
# (fsx-rs) at pinned versions in /usr/local/bin, cargo-nextest (the test runner), and
# Python's grpcio at a pinned version in its own virtualenv (a second gRPC client of the
# CSI plugin, one that sends the socket's path as :authority); makes sure the users
# pjdfstest acts as exist. Does nothing when all of it is there already.
set -euo pipefail
PJDFSTEST_VERSION=0.2.2
FSX_VERSION=0.3.2
NEXTEST_VERSION=0.9.143
GRPCIO_VERSION=1.85.1
GRPCIO_VENV=/opt/emptydirfs-test/grpcio

need=()
command -v fio >/dev/null || need+=(fio)
command -v setfattr >/dev/null || need+=(attr)
command -v setfacl >/dev/null || need+=(acl)
command -v fusermount3 >/dev/null || need+=(fuse3)
command -v setpriv >/dev/null || need+=(util-linux)
command -v setcap >/dev/null || need+=(libcap2-bin)
command -v git >/dev/null || need+=(git)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
# A FUSE filesystem to put under a disk volume and stop, to wedge its daemon.
command -v bindfs >/dev/null || need+=(bindfs)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v gcc >/dev/null || need+=(gcc)
# A Python with venv, for grpcio below.
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import ensurepip' 2>/dev/null || need+=(python3-venv)
# pjdfstest links libacl (through the exacl crate) when it is built.
dpkg -s libacl1-dev >/dev/null 2>&1 || need+=(libacl1-dev)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -e /dev/fuse ] || modprobe fuse

# cargo install <crate> <version> <binary>: only when that version is not there.
install_crate() {
    if ! "/usr/local/bin/$3" --version 2>/dev/null | grep -qx "$3 $2"; then
        echo "installing: $1 $2"
        cargo install --quiet --locked --force --root /usr/local "$1@$2"
    fi
}
# The test runner (each test a process with a deadline); usually on the machine already.
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing: cargo-nextest $NEXTEST_VERSION"
    cargo install --quiet --locked "cargo-nextest@$NEXTEST_VERSION"
fi
install_crate pjdfstest "$PJDFSTEST_VERSION" pjdfstest
install_crate fsx "$FSX_VERSION" fsx

# tests/integration/csi/grpcio.rs runs tests/integration/csi/grpcio_client.py with it.
if ! "$GRPCIO_VENV/bin/python" -c "import grpc, sys; sys.exit(grpc.__version__ != '$GRPCIO_VERSION')" 2>/dev/null; then
    echo "installing: grpcio $GRPCIO_VERSION in $GRPCIO_VENV"
    python3 -m venv --clear "$GRPCIO_VENV"
    "$GRPCIO_VENV/bin/pip" install --quiet --disable-pip-version-check "grpcio==$GRPCIO_VERSION"
fi

# pjdfstest switches to these two user/group pairs (tests/conformance/pjdfstest.toml).
getent group nogroup >/dev/null || groupadd --system nogroup
getent passwd nobody >/dev/null || useradd --system --gid nogroup --no-create-home nobody
getent group daemon >/dev/null || groupadd --system daemon
getent passwd daemon >/dev/null || useradd --system --gid daemon --no-create-home daemon
