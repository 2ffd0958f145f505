"""Packs what a GPU session needs into carry folders the device tool can take, one a call.

    ../shared/device/wheels.sh                   # once: Ray's wheels for the GPU machine
    python benchmarks/device_pack.py             # .device-pack/part1 ... partN, the calls
    python benchmarks/device_pack.py --sets none # Ray alone, for benchmarks/gpu_scan.sh

A device call carries at most 64 MiB, the working tree included, and a GPU session has 15
minutes, start-up included, so what travels is packed tight: Ray and the packages the GPU
machine lacks (`.whl-ray/`, installed for its Python 3.12 here and kept as one xz archive,
about 27 MB where the wheels take 48) go with the first part, and the face sets' images (JPEGs,
which do not compress) fill the parts as plain tar files, file by file. The five face sets and
Ray go in three calls. OpenCV is not carried: the GPU machine's OpenCV 5 has no Haar cascades,
which neither the quality rows nor the scan's default detector use (both ran here under
OpenCV 5.1). scikit-learn and scipy, which the machine's README does not list, go in an extra
part (`.device-pack/extra`), carried only when a call prints that they are missing there.

On the machine, `bash benchmarks/device_unpack.sh .device-pack/partK` unpacks a part into
/tmp/site and /tmp/data; the script prints the calls in order, the benchmark in the last.
"""

from __future__ import annotations

import io
import lzma
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import click
from bench_quality import REAL_SETS, data_option  # this folder

MIB = 1 << 20
# What the GPU machine's pip installs the wheels for (its python3 is CPython 3.12).
PLATFORM = [
    "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux2014_x86_64",
    "--python-version", "3.12", "--implementation", "cp", "--only-binary=:all:",
]  # fmt: skip
# What the benchmarks import that the GPU machine's list does not name (its README names torch,
# torchvision, pandas, pyarrow, click, matplotlib and OpenCV): packed apart, carried only when
# device_unpack.sh says they are missing there.
EXTRA = "scikit-learn,scipy,joblib,threadpoolctl,cloudpickle,narwhals"
# tar's end-of-archive blocks and record padding, kept free in every part
TAR_END = 10240


def tree_bytes(root: str) -> int:
    """Bytes of the working tree as the device tool carries it: tracked files and untracked
    ones git does not ignore."""
    names = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root, capture_output=True, check=True,
    ).stdout.split(b"\0")  # fmt: skip
    paths = (os.path.join(root, n.decode()) for n in names if n)
    return sum(os.path.getsize(p) for p in paths if os.path.isfile(p))


def download(packages: str, wheels: str) -> None:
    """The packages' wheels for the GPU machine's Python, from the package index."""
    os.makedirs(wheels, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *PLATFORM, "-d", wheels,
         *packages.split(",")],
        check=True,
    )  # fmt: skip


def build_site(found: list[str], target: str) -> None:
    """`target`: an xz tar of the wheels `found` installed for the GPU machine's Python,
    without byte code and source maps (the machine compiles what it imports)."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index",
             "--ignore-requires-python", "--no-compile", "--target", tmp, *PLATFORM, *found],
            check=True,
        )  # fmt: skip

        def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
            name = info.name
            return None if "__pycache__" in name or name.endswith(".js.map") else info

        partial = target + ".partial"
        with lzma.open(partial, "wb", preset=9) as xz, tarfile.open(fileobj=xz, mode="w") as tar:
            for entry in sorted(os.listdir(tmp)):
                tar.add(os.path.join(tmp, entry), arcname=entry, filter=keep)
        os.replace(partial, target)


def packed_site(wheels: str, archive: str) -> int:
    """The bytes of `archive`, the wheels packed by build_site; packed again when it is missing
    or older than one of the wheels."""
    names = os.listdir(wheels) if os.path.isdir(wheels) else []
    found = sorted(os.path.join(wheels, w) for w in names if w.endswith(".whl"))
    if not found:
        raise click.ClickException(f"no wheels in {wheels}: run ../shared/device/wheels.sh")
    built = os.path.getmtime(archive) if os.path.isfile(archive) else None
    if built is None or any(os.path.getmtime(w) > built for w in found):
        os.makedirs(os.path.dirname(archive) or ".", exist_ok=True)
        click.echo(f"installing {wheels} for Python 3.12 and packing it (a minute or two)")
        build_site(found, archive)
    return os.path.getsize(archive)


def data_files(data: str, sets: list[str]) -> list[tuple[str, str]]:
    """(path, name inside the archive) of every file of the sets, in a fixed order."""
    out = []
    for s in sets:
        root = os.path.join(data, s)
        if not os.path.isdir(root):
            raise click.ClickException(f"no face set at {root}")
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for f in sorted(files):
                path = os.path.join(folder, f)
                out.append((path, os.path.relpath(path, data)))
    return out


def member_bytes(name: str, size: int) -> int:
    """What one file costs in a tar: its header (a second one for a long name) and its data
    in 512-byte blocks."""
    header = 512 if len(name.encode()) <= 100 else 3 * 512
    return header + -(-size // 512) * 512


def pack_data(files: list[tuple[str, str]], first_room: int, room: int) -> list[list]:
    """The files split, in order, into parts: the first with `first_room` bytes, the others
    with `room` (each less the tar's end)."""
    parts, used, cap = [[]], 0, first_room - TAR_END
    for path, name in files:
        cost = member_bytes(name, os.path.getsize(path))
        if cost > room - TAR_END:
            raise click.ClickException(f"{path} alone is larger than a part")
        if used + cost > cap:
            parts.append([])
            used, cap = 0, room - TAR_END
        parts[-1].append((path, name))
        used += cost
    return [p for p in parts if p]


def write_tar(files: list[tuple[str, str]], target: str) -> None:
    with tarfile.open(target, "w", format=tarfile.GNU_FORMAT) as tar:
        for path, name in files:
            info = tar.gettarinfo(path, arcname=name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)


def pack_extra(packages: str, wheels: str, out: str, room: int) -> None:
    """OUT/extra/site-extra.tar.xz: the packages the machine may lack, for a call of their own,
    from the wheels in `wheels` (downloaded there when it is empty)."""
    if not os.path.isdir(wheels) or not os.listdir(wheels):
        download(packages, wheels)
    archive = os.path.join(out, "site-extra.tar.xz")
    size = packed_site(wheels, archive)
    folder = os.path.join(out, "extra")
    os.makedirs(folder)
    os.link(archive, os.path.join(folder, "site-extra.tar.xz"))
    if size > room:
        raise click.ClickException(f"{archive}: {size / MIB:.1f} MiB, more than a call takes")
    click.echo(f"{folder}: {packages}, {size / MIB:.1f} MiB")


@click.command()
@data_option
@click.option(
    "--sets",
    default=",".join(REAL_SETS),
    show_default=True,
    help="Face sets to carry, joined by commas, or 'none' (Ray alone).",
)
@click.option("--wheels", default=".whl-ray", show_default=True)
@click.option("--out", default=".device-pack", show_default=True)
@click.option(
    "--limit-mib", default=64.0, show_default=True, help="What one call carries, tree included."
)
@click.option(
    "--extra",
    default=EXTRA,
    show_default=True,
    help="Packages for the extra part, carried when the first call says they are missing "
    "('' for none).",
)
@click.option(
    "--extra-wheels",
    default=None,
    help="Where the extra part's wheels are. [default: OUT/wheels-extra, downloaded when empty]",
)
@click.option(
    "--then",
    "then",
    default="bash benchmarks/gpu_quality.sh",
    show_default=True,
    help="The command of the last call, after its part is unpacked.",
)
def main(data, sets, wheels, out, limit_mib, extra, extra_wheels, then):
    root = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True
    ).stdout.strip()
    tree = tree_bytes(root)
    room = int(limit_mib * MIB) - tree - MIB  # a MiB kept free for what the tool adds
    site = os.path.join(out, "site.tar.xz")
    site_bytes = packed_site(wheels, site) if wheels else 0
    chosen = [] if sets == "none" else sets.split(",")
    parts = pack_data(data_files(data, chosen), room - site_bytes, room) if chosen else []
    if not parts:
        parts = [[]]
    for old in os.listdir(out) if os.path.isdir(out) else []:
        if old.startswith("part") or old == "extra":
            shutil.rmtree(os.path.join(out, old))
    for k, files in enumerate(parts, 1):
        folder = os.path.join(out, f"part{k}")
        os.makedirs(folder)
        if k == 1 and wheels:
            os.link(site, os.path.join(folder, "site.tar.xz"))
        if files:
            write_tar(files, os.path.join(folder, "data.tar"))
        size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
        if size + tree > limit_mib * MIB:
            raise click.ClickException(
                f"{folder}: {size + tree} bytes with the tree, over the limit"
            )
        click.echo(
            f"{folder}: {len(files)} images, {size / MIB:.1f} MiB (+ {tree / MIB:.1f} MiB of tree)"
        )
    buf = io.StringIO()
    for k in range(1, len(parts) + 1):
        command = f"bash benchmarks/device_unpack.sh {out}/part{k}"
        if k == len(parts):
            command += f" && {then}"
        buf.write(f'call {k}: carry ["{out}/part{k}"], command: {command}\n')
    if extra:
        pack_extra(extra, extra_wheels or os.path.join(out, "wheels-extra"), out, room)
        buf.write(
            f'when a call prints "missing:", before the last: carry ["{out}/extra"], command: '
            f"bash benchmarks/device_unpack.sh {out}/extra\n"
        )
    with open(os.path.join(out, "calls.txt"), "w") as f:
        f.write(buf.getvalue())
    click.echo(buf.getvalue(), nl=False)


if __name__ == "__main__":
    main()
