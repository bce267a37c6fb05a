#!/usr/bin/env bash
# Run a job of jobs/ with the project's jars and settings.
#
#   ./spark-submit.sh [spark-submit options] JOB [job arguments]
#
# JOB is a module name in jobs/ (raw_trades, bars, vendor_bars, feed_events, pipeline,
# maintenance, rebuild_bars, bigquery_sync, demo). Spark options (--master, --conf, --driver-memory, ...) pass
# straight to spark-submit; the default master is local[*]. The jobs read their own settings from
# conf/lakehouse.toml and LAKEHOUSE__* environment variables, never from this script.
#
# On a cluster (Dataproc, YARN, Kubernetes): ./spark-submit.sh --master yarn JOB. The project's
# Python packages ship as a zip with --py-files; the driver needs `pip install .` (pydantic,
# pyiceberg) and SPARK_SUBMIT may name the cluster's spark-submit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$root"

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
    --master) has_master=true; spark_opts+=("$1" "$2"); shift 2 ;;
    --master=*) has_master=true; spark_opts+=("$1"); shift ;;
    *=*) spark_opts+=("$1"); shift ;;
    *) spark_opts+=("$1" "$2"); shift 2 ;;
  esac
done
[[ $# -ge 1 ]] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
job="$1"; shift
job_file="$root/jobs/${job%.py}.py"
[[ -f "$job_file" ]] || { echo "no job '$job' in jobs/ (have: $(cd jobs && ls *.py | grep -v __init__ | sed 's/.py$//' | tr '\n' ' '))" >&2; exit 2; }
$has_master || spark_opts=(--master "local[*]" "${spark_opts[@]}")

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
if [[ "$master" != local* ]]; then
  mkdir -p "$root/.state/dist"
  py_zip="$(mktemp "$root/.state/dist/lakehouse-py-XXXXXX.zip")"
  python3 - "$py_zip" <<'PY'
import pathlib, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as archive:
    for package in ("lakehouse", "jobs"):
        for source in pathlib.Path(package).rglob("*.py"):
            archive.write(source)
PY
  py_files=(--py-files "$py_zip")
fi

export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$root/.venv/bin/python}"
[[ -x "$PYSPARK_PYTHON" ]] || export PYSPARK_PYTHON=python3
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$PYSPARK_PYTHON}"

# Local masters: file: paths through the java.nio FileSystem, whose jar must be on the driver's
# launch classpath (lakehouse.spark.local_filesystem_conf says why and prints the arguments).
local_fs=()
if [[ "$master" == local* ]]; then
  mapfile -t local_fs < <("$PYSPARK_DRIVER_PYTHON" -m lakehouse.spark)
fi

exec "$spark_submit" \
  --name "lakehouse-$job" \
  --jars "$jar_list" \
  "${py_files[@]}" \
  "${local_fs[@]}" \
  --conf spark.driver.memory=2g \
  --conf spark.ui.showConsoleProgress=false \
  "${spark_opts[@]}" \
  "$job_file" "$@"
