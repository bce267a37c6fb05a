#!/usr/bin/env bash
# Run a job of jobs/ with the project's jars and settings.
#
#   ./spark-submit.sh [spark-submit options] JOB [job arguments]
#
# JOB is a module name in jobs/ (raw_trades, bars, vendor_bars, feed_events, source_rejects,
# pipeline, maintenance, rebuild_bars, bigquery_sync). Spark options (--master, --conf,
# --driver-memory, ...) pass straight to spark-submit; the default master is local[*]. The jobs
# read their own settings from conf/lakehouse.toml (or --config FILE) and LAKEHOUSE__* environment
# variables.
#
# On a cluster (Dataproc, YARN, Kubernetes): ./spark-submit.sh --master yarn JOB. The project's
# Python packages ship as a zip with --py-files (.state/dist, one per version of the code: a zip no
# running job uses is removed by the next launch); the driver needs `pip install .` (pydantic,
# pyiceberg) and SPARK_SUBMIT may name the cluster's spark-submit.
#
# Stopping: SIGTERM or SIGINT to this script (or to its process group, as Ctrl-C does) asks the job
# to stop at its next safe point (between micro-batches, or between runs) and the script exits with
# the job's exit code, 0 for a clean stop; a second signal a second or more later stops it at once.
set -euo pipefail

caller_dir="$PWD"
root="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"  # through a symlink: the project, not the link's folder
cd "$root"
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

spark_submit="${SPARK_SUBMIT:-}"
if [[ -z "$spark_submit" ]]; then
  if [[ -x "$root/.venv/bin/spark-submit" ]]; then spark_submit="$root/.venv/bin/spark-submit"
  else spark_submit="$(command -v spark-submit || true)"; fi
fi
[[ -n "$spark_submit" ]] || { echo "spark-submit not found: run 'make setup' or set SPARK_SUBMIT" >&2; exit 2; }

shopt -s nullglob
jars=("$root"/jars/spark/*.jar)
[[ ${#jars[@]} -gt 0 ]] || { echo "no jars in jars/spark: run 'make jars'" >&2; exit 2; }
jar_list="$(IFS=,; echo "${jars[*]}")"

spark_opts=()
has_master=false
while [[ $# -gt 0 && "$1" == -* ]]; do
  case "$1" in
    --verbose|-v|--supervise) spark_opts+=("$1"); shift ;;
    --master) [[ $# -ge 2 ]] || { echo "spark-submit option $1 needs a value" >&2; exit 2; }
              has_master=true; spark_opts+=("$1" "$2"); shift 2 ;;
    --master=*) has_master=true; spark_opts+=("$1"); shift ;;
    *=*) spark_opts+=("$1"); shift ;;
    -h|--help) usage; exit 0 ;;
    *) [[ $# -ge 2 ]] || { echo "spark-submit option $1 needs a value" >&2; exit 2; }
       spark_opts+=("$1" "$2"); shift 2 ;;
  esac
done
[[ $# -ge 1 ]] || { usage >&2; exit 2; }
job="${1%.py}"; shift
job_file="$root/jobs/$job.py"
if [[ ! "$job" =~ ^[a-z_]+$ || "$job" == __init__ || ! -f "$job_file" ]]; then  # no path out of jobs/
  echo "no job '$job' in jobs/ (have: $(cd jobs && ls *.py | grep -v __init__ | sed 's/.py$//' | tr '\n' ' '))" >&2
  exit 2
fi
$has_master || spark_opts=(--master "local[*]" "${spark_opts[@]}")

# The job runs from $root: a relative --config naming a file in the caller's directory is made
# absolute; any other relative path is left for the job to find under the project root.
from_caller() { if [[ "$1" != /* && -e "$caller_dir/$1" ]]; then echo "$caller_dir/$1"; else echo "$1"; fi; }
job_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) job_args+=("$1"); shift; [[ $# -eq 0 ]] || { job_args+=("$(from_caller "$1")"); shift; } ;;
    --config=*) job_args+=("--config=$(from_caller "${1#--config=}")"); shift ;;
    *) job_args+=("$1"); shift ;;
  esac
done
set -- "${job_args[@]}"

# On a cluster the driver and executors need lakehouse/ and jobs/: ship them as a zip. Locally the
# virtualenv has the project installed, so nothing is shipped.
py_files=()
master="local[*]"
for ((i = 0; i < ${#spark_opts[@]}; i++)); do
  case "${spark_opts[$i]}" in
    --master) master="${spark_opts[$((i + 1))]}" ;;
    --master=*) master="${spark_opts[$i]#--master=}" ;;
  esac
done
# The zip is named after a digest of the sources, so runs of the same code share one, and a run
# holds a shared lock on its zip for as long as its JVM lives (the descriptor is inherited). Under
# the folder's lock, one launch at a time builds or reuses its zip, locks it, and deletes the other
# zips that no run holds and no running process names (a job started before these locks existed).
zip_in_use() {
  flock --nonblock --exclusive "$1" true || return 0
  pgrep -f -- "$(basename "$1" | sed 's/[.]/[.]/g')" >/dev/null
}
if [[ "$master" != local* ]]; then
  command -v flock >/dev/null || { echo "flock not found: install util-linux" >&2; exit 2; }
  dist="$root/.state/dist"
  mkdir -p "$dist"
  exec {dist_lock}>"$dist/.lock"
  flock --wait 120 "$dist_lock" || { echo "another launch holds $dist/.lock for over 120 s" >&2; exit 2; }
  py_zip="$(python3 - "$dist" <<'PY'
import hashlib, os, pathlib, sys, tempfile, zipfile
sources = sorted(path for package in ("lakehouse", "jobs") for path in pathlib.Path(package).rglob("*.py"))
contents = {path: path.read_bytes() for path in sources}
digest = hashlib.sha256()
for path, content in contents.items():
    digest.update(f"{path}\0{len(content)}\0".encode() + content)
target = pathlib.Path(sys.argv[1]) / f"lakehouse-py-{digest.hexdigest()[:20]}.zip"
if not target.exists():  # written whole under another name, then renamed: a zip is never partial
    handle, partial = tempfile.mkstemp(dir=sys.argv[1], prefix=".partial-", suffix=".zip")
    with os.fdopen(handle, "wb") as file, zipfile.ZipFile(file, "w") as archive:
        for path, content in contents.items():
            archive.writestr(str(path), content)
    os.replace(partial, target)
print(target)
PY
)"
  exec {zip_claim}<"$py_zip"
  flock --shared "$zip_claim"
  for old in "$dist"/lakehouse-py-*.zip "$dist"/.partial-*; do
    [[ "$old" == "$py_zip" ]] || zip_in_use "$old" || rm -f -- "$old"
  done
  exec {dist_lock}>&-
  py_files=(--py-files "$py_zip")
fi

export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$root/.venv/bin/python}"
[[ -x "$PYSPARK_PYTHON" ]] || export PYSPARK_PYTHON=python3
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYSPARK_PYTHON}"

# Local masters: file: paths through the java.nio FileSystem, whose jar must be on the driver's
# launch classpath, and the driver's servers on loopback (lakehouse.spark.main prints the address,
# which the web UI takes from SPARK_LOCAL_IP, then the spark-submit arguments).
local_conf=()
if [[ "$master" == local* ]]; then
  mapfile -t local_conf < <("$PYSPARK_DRIVER_PYTHON" -m lakehouse.spark "$@")
  [[ ${#local_conf[@]} -ge 1 ]] || exit 2  # it printed what is wrong with the settings
  export SPARK_LOCAL_IP="${local_conf[0]}"
  local_conf=("${local_conf[@]:1}")
fi

# The script stays as a small supervisor instead of exec'ing spark-submit: the JVM would die on
# SIGTERM (exit 143) without letting the Python driver stop its queries, and leave the driver
# orphaned. So the JVM starts in a session of its own with SIGTERM and SIGINT ignored (HotSpot keeps
# a signal ignored at launch ignored; the Python driver installs its own handlers, see
# lakehouse.shutdown), and this script forwards each stop signal it receives to the Python driver.
# spark-submit, spark-class and java are exec'ed in turn, so the JVM keeps the job's pid below.
( trap '' TERM INT; exec setsid "$spark_submit" \
  --name "lakehouse-$job" \
  --jars "$jar_list" \
  "${py_files[@]}" \
  "${local_conf[@]}" \
  --conf spark.driver.memory=2g \
  --conf spark.ui.showConsoleProgress=false \
  "${spark_opts[@]}" \
  "$job_file" "$@" ) &
jvm=$!

python_driver() { pgrep -P "$jvm" -f -- "$job_file" | head -n 1; }

forward_stop() {
  local driver
  driver="$(python_driver || true)"
  for _ in 1 2 3 4 5 6 7 8 9 10; do  # the JVM may still be starting the driver
    [[ -n "$driver" ]] && break
    sleep 0.2
    driver="$(python_driver || true)"
  done
  if [[ -n "$driver" ]]; then
    kill -TERM "$driver" 2>/dev/null || true
  else  # no driver (yet, or any more): nothing to stop cleanly, end the JVM's session
    kill -KILL -- "-$jvm" 2>/dev/null || true
  fi
}
trap forward_stop TERM INT

while kill -0 "$jvm" 2>/dev/null; do
  wait "$jvm" || true  # returns early when a trapped signal arrives; the JVM is waited for again
done
set +e
wait "$jvm"
exit $?
