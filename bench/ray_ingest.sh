#!/usr/bin/env bash
# images/s of the dlib face pipeline: the local worker pool (1, 2 workers) against a one-node Ray cluster
# (1, 2 actors) started here on 127.0.0.1, same folder of N generated portraits; cleans up its processes.
# usage, from the repository root: bash bench/ray_ingest.sh [N_IMAGES]
set -euo pipefail
N=${1:-60}
W=$(mktemp -d /tmp/vfbXXXX)
.venv/bin/python - "$W/photos" "$N" <<'PY'
import sys, pathlib
from PIL import Image
from skimage import data
root = pathlib.Path(sys.argv[1]); root.mkdir(parents=True)
face = Image.fromarray(data.astronaut())
for i in range(int(sys.argv[2])):
    s = 480 + 2 * i
    face.resize((s, s)).save(root / f"astro_{i:03d}.jpg", quality=88)
PY
run() { .venv/bin/vecface ingest "$W/photos" --backend faiss --collection "c$1" --embedder face-dlib \
        --faiss-path "$W/faiss" --data-dir "$W/home" --json --no-progress "${@:2}" \
        | .venv/bin/python -c "import json,sys; r=json.load(sys.stdin); print('$1', r['files_stored'], r['seconds'], round(r['files_stored']/r['seconds'],2), 'images/s')"; }
echo "load before: $(cat /proc/loadavg)"
run local1 --workers 1
run local2 --workers 2
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_TMPDIR=$W
mkdir -p "$W/ray"
P=$(python3 -c "import socket;s=socket.socket();s.bind(('127.0.0.1',0));print(s.getsockname()[1])")
.venv/bin/ray start --head --port="$P" --node-ip-address=127.0.0.1 --num-cpus=2 --include-dashboard=false \
    --disable-usage-stats --temp-dir="$W" >/dev/null 2>&1
cleanup() {  # this cluster's processes only: those naming $W and their children
    local ours=""
    for p in /proc/[0-9]*; do case "$(tr "\0" " " < $p/cmdline 2>/dev/null || true)" in *"$W"*) ours="$ours ${p#/proc/}";; esac; done
    for p in $ours; do ours="$ours $(pgrep -P "$p" | tr '\n' ' ' || true)"; done
    [ -n "$ours" ] && kill -9 $ours 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT
run ray1 --ray "127.0.0.1:$P" --workers 1
run ray2 --ray "127.0.0.1:$P" --workers 2
echo "load after: $(cat /proc/loadavg)"
