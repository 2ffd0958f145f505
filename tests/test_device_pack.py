"""What a GPU session carries: benchmarks/device_pack.py packs packages and face images into
parts the device tool takes, benchmarks/device_unpack.sh puts them back, file for file."""

import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from device_pack import MIB, tree_bytes  # noqa: E402


def write_wheel(folder, name):
    """A small pure-Python wheel, as pip builds them: `name` with ANSWER = 42."""
    info = f"{name}-0.1.dist-info"
    files = {
        f"{name}/__init__.py": "ANSWER = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    os.makedirs(folder, exist_ok=True)
    with zipfile.ZipFile(os.path.join(folder, f"{name}-0.1-py3-none-any.whl"), "w") as z:
        for n, text in files.items():
            z.writestr(n, text)
        z.writestr(f"{info}/RECORD", record)


def test_parts_stay_under_the_limit_and_unpack_to_the_same_files(tmp_path):
    data = tmp_path / "faces"
    rng = __import__("random").Random(0)
    expected = {}
    for s in ("set_a", "set_b"):
        for split in ("train", "val"):
            for label in ("real", "fake"):
                folder = data / s / split / label
                folder.mkdir(parents=True)
                for i in range(12):
                    # one name too long for a plain tar header
                    name = f"{i:03d}.jpg" if i else "x" * 120 + ".jpg"
                    body = rng.randbytes(rng.randrange(20_000, 90_000))
                    (folder / name).write_bytes(body)
                    expected[os.path.join(s, split, label, name)] = body
    wheels, extra = tmp_path / "wheels", tmp_path / "extra-wheels"
    write_wheel(wheels, "tinypkg")
    write_wheel(extra, "tinyextra")
    out = tmp_path / "pack"
    tree = tree_bytes(ROOT)
    limit = (tree + 2.3 * MIB) / MIB  # room for a bit over a MiB of images a part
    done = subprocess.run(
        [sys.executable, "benchmarks/device_pack.py", "--data", str(data), "--sets",
         "set_a,set_b", "--wheels", str(wheels), "--out", str(out), "--limit-mib",
         f"{limit:.4f}", "--extra", "tinyextra", "--extra-wheels", str(extra),
         "--then", "echo run"],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    parts = sorted(p for p in os.listdir(out) if p.startswith("part"))
    assert len(parts) >= 3  # about 5 MiB of images
    for p in parts:
        size = sum(f.stat().st_size for f in (out / p).iterdir())
        assert size + tree <= limit * MIB
    calls = (out / "calls.txt").read_text().splitlines()
    assert len(calls) == len(parts) + 1
    assert calls[-2].endswith("&& echo run") and "&&" not in calls[0]
    assert calls[-1].startswith('when a call prints "missing:"') and "extra" in calls[-1]

    site, unpacked = tmp_path / "site", tmp_path / "data"
    # the script's python3: this test's, which has every module the benchmarks import
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]
    env = dict(os.environ, SITE=str(site), DATA=str(unpacked), PATH=path)
    for p in parts + ["extra"]:
        done = subprocess.run(
            ["bash", "benchmarks/device_unpack.sh", str(out / p)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "every module the benchmarks import is here" in done.stdout
    found = {}
    for folder, _, files in os.walk(unpacked):
        for f in files:
            path = os.path.join(folder, f)
            with open(path, "rb") as fh:
                found[os.path.relpath(path, unpacked)] = fh.read()
    assert found == expected
    ran = subprocess.run(
        [sys.executable, "-c", "import tinypkg as a, tinyextra as b; print(a.ANSWER + b.ANSWER)"],
        env=dict(os.environ, PYTHONPATH=str(site)), capture_output=True, text=True,
    )  # fmt: skip
    assert ran.stdout.strip() == "84", ran.stderr


def test_a_set_that_is_not_there_is_named(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/device_pack.py", "--data", str(tmp_path), "--sets",
         "nowhere", "--wheels", "", "--extra", "", "--out", str(tmp_path / "pack")],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no face set at" in done.stderr and "nowhere" in done.stderr
