#!/usr/bin/env python3
"""Writes the data of bench.sh's scratch-work job: a source tree, as a tar, and the sort
phase's input (standard library only).

  scratch-tree.py OUT.tar SORT_INPUT [--quick]

Both are made from a fixed seed, so every run on every machine gets the same bytes (the
same tar, byte for byte: fixed names, sizes, contents, modes, owner root and mtime),
with no network. The tree has a source tree's shape:

- 12,000 files in about 1,100 directories up to 5 levels deep under a dozen top-level
  ones (src, lib, include, tests, docs, vendor/...), named like code;
- text files of varied size: sizes drawn from a log-normal distribution (median about
  4 KiB, p90 about 17 KiB, a few hundred KiB at most), made of code-like lines
  (identifiers, keywords, numbers, comments, some of them `TODO` for the grep phase),
  each file its own;
- a few large ones: a log, generated fixtures, a changelog (3-20 MB), and binary blobs
  (incompressible, as images and fonts are);
- 157 MB in all, exactly.

SORT_INPUT is 200 MB of log lines in no order, outside the tree.
--quick makes a small tree (400 files, 4 MB) of the same shape and a 4 MB sort input.
"""
import hashlib
import io
import random
import sys
import tarfile

SEED = 21
MTIME = 1704067200  # 2024-01-01 00:00 UTC
FULL = {"files": 12_000, "dirs": 1_100, "total": 157_000_000, "large": 1.0,
        "sort_bytes": 200_000_000}
QUICK = {"files": 400, "dirs": 40, "total": 4_000_000, "large": 0.025,
         "sort_bytes": 4_000_000}
# The large files of the full tree, in bytes (the quick tree's are scaled by "large").
LOGS = [("data/events.log", 20_000_000)]
TEXTS = [
    ("data/fixtures/records.json", 12_000_000),
    ("data/fixtures/strings.txt", 8_000_000),
    ("docs/CHANGELOG.md", 3_200_000),
]
BLOBS = [("assets/images/atlas.png", 2_000_000), ("assets/fonts/mono.ttf", 800_000),
         ("assets/images/logo.png", 160_000)]
TOP = ["src", "lib", "include", "tests", "docs", "tools", "vendor", "examples", "bench",
       "scripts", "third_party", "config"]
WORDS = (
    "alloc buffer cache config context data decode encode entry error event file flags "
    "frame handle header index inode init item key layout length limit list lock map "
    "mode node offset option parse path pool queue read record region reply request "
    "result ring scan session size slot state stream table task token value vector "
    "volume worker write"
).split()
KEYWORDS = "if for while return let const static struct fn match else break".split()
EXT = [(".c", 5), (".h", 3), (".rs", 4), (".py", 2), (".go", 2), (".js", 2), (".md", 1),
       (".txt", 1), (".json", 1), (".yaml", 1)]
LEVELS = ["INFO", "INFO", "INFO", "DEBUG", "WARN", "ERROR"]


class Rng:
    """random.Random used only through random() and lognormvariate() (which draws on
    random() alone): the sequences Python keeps stable across versions for a seed."""

    def __init__(self, seed):
        self.r = random.Random(seed)

    def below(self, n):
        return int(self.r.random() * n)

    def pick(self, seq):
        return seq[self.below(len(seq))]

    def weighted(self, pairs):
        total = sum(w for _, w in pairs)
        x = self.r.random() * total
        for item, w in pairs:
            x -= w
            if x < 0:
                return item
        return pairs[-1][0]

    def lognormal(self, mu, sigma):
        return self.r.lognormvariate(mu, sigma)


def ident(rng):
    return "_".join(rng.pick(WORDS) for _ in range(1 + rng.below(3)))


def code_line(rng):
    kind = rng.below(20)
    indent = "    " * rng.below(4)
    if kind == 0:
        return f"{indent}// TODO: {rng.pick(WORDS)} the {rng.pick(WORDS)} before {ident(rng)}"
    if kind < 4:
        return f"{indent}/* {' '.join(rng.pick(WORDS) for _ in range(3 + rng.below(8)))} */"
    if kind < 6:
        return ""
    if kind < 12:
        return (f"{indent}{rng.pick(KEYWORDS)} {ident(rng)} = "
                f"{ident(rng)}({ident(rng)}, {rng.below(4096)});")
    return (f"{indent}{ident(rng)}->{rng.pick(WORDS)} += "
            f"{ident(rng)}[{rng.below(64)}] * {rng.below(1000)};")


def corpus(rng, lines):
    """A pool of code lines; each file is a walk through it from its own offset."""
    return [code_line(rng) + "\n" for _ in range(lines)]


def text(rng, pool, header, size):
    """SIZE bytes: HEADER, then lines of the pool from a random offset, skipping some."""
    out = [header]
    n = len(header)
    i = rng.below(len(pool))
    while n < size:
        line = pool[i % len(pool)]
        out.append(line)
        n += len(line)
        i += 1 + rng.below(3)
    return "".join(out).encode()[:size]


def log_lines(rng, pool, size):
    """About SIZE bytes of log lines in no order: a random timestamp and level, then a
    line of the pool (two draws a line: the sort input is large)."""
    out, n = [], 0
    while n < size:
        x = int(rng.r.random() * (1 << 52))
        x, usec = divmod(x, 1_000_000)
        x, sec = divmod(x, 86_400 * 28)
        x, month = divmod(x, 12)
        level = x % len(LEVELS)
        day, sec = divmod(sec, 86_400)
        line = (f"2024-{month + 1:02d}-{day + 1:02d}T{sec // 3600:02d}:{sec // 60 % 60:02d}:"
                f"{sec % 60:02d}.{usec:06d} {LEVELS[level]} "
                f"{pool[rng.below(len(pool))].strip()}\n")
        out.append(line)
        n += len(line)
    return "".join(out).encode()


def directories(rng, count):
    dirs = {t: 1 for t in TOP}
    order = list(TOP)
    while len(order) < count:
        parent = rng.pick(order)
        depth = dirs[parent]
        if depth >= 5 or (depth >= 3 and rng.below(2)):
            continue
        path = f"{parent}/{ident(rng) if rng.below(3) else rng.pick(WORDS)}"
        if path not in dirs:
            dirs[path] = depth + 1
            order.append(path)
    return order


def small_sizes(rng, count, total):
    """COUNT log-normal sizes (median about 4 KiB, capped), scaled to sum to TOTAL."""
    raw = [min(rng.lognormal(8.3, 1.2), 400_000.0) for _ in range(count)]
    scale = total / sum(raw)
    sizes = [max(16, int(s * scale)) for s in raw]
    sizes[0] += total - sum(sizes)
    return sizes


def members(rng, pool, p):
    """The tree's files: (path, bytes), sorted by path."""
    large = [(path, log_lines(rng, pool, int(size * p["large"]))[:int(size * p["large"])])
             for path, size in LOGS]
    for path, size in TEXTS:
        large.append((path, text(rng, pool, f"# {path}\n", int(size * p["large"]))))
    for path, size in BLOBS:
        # SHAKE-256 of the path: the same bytes on every Python.
        seed = f"{SEED} {path}".encode()
        large.append((path, hashlib.shake_256(seed).digest(int(size * p["large"]))))
    rest = p["total"] - sum(len(b) for _, b in large)
    dirs = directories(rng, p["dirs"])
    # Files go to directories unevenly, as in a real tree: a few hold many.
    weights = [(d, 1 + (rng.below(8) == 0) * 10) for d in dirs]
    names = {path for path, _ in large}
    files = []
    for size in small_sizes(rng, p["files"] - len(large), rest):
        while True:
            name = f"{rng.weighted(weights)}/{ident(rng)}{rng.weighted(EXT)}"
            if name not in names:
                break
        names.add(name)
        files.append((name, text(rng, pool, f"// {name}\n", size)))
    return sorted(large + files)


def add(tar, path, data=None):
    info = tarfile.TarInfo(path)
    info.mtime = MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if data is None:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
    else:
        info.size = len(data)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(data))


def main():
    args = [a for a in sys.argv[1:] if a != "--quick"]
    if len(args) != 2:
        sys.exit(__doc__)
    p = QUICK if "--quick" in sys.argv[1:] else FULL
    rng = Rng(SEED)
    pool = corpus(rng, 50_000 if p is FULL else 5_000)
    files = members(rng, pool, p)
    dirs = sorted({"/".join(f.split("/")[:i]) for f, _ in files
                   for i in range(1, f.count("/") + 1)})
    with tarfile.open(args[0], "w", format=tarfile.GNU_FORMAT) as tar:
        for d in dirs:
            add(tar, d)
        for path, data in files:
            add(tar, path, data)
    sort_input = log_lines(rng, pool, p["sort_bytes"])
    with open(args[1], "wb") as f:
        f.write(sort_input)
    total = sum(len(d) for _, d in files)
    print(f"scratch tree: {len(files)} files, {len(dirs)} directories, {total} bytes; "
          f"sort input: {len(sort_input)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
