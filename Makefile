# Two commands matter: `make demo` and `make test`. Both set everything up on a fresh machine
# (virtualenv, Python packages, JVM jars from Maven Central) and are cheap when it is done.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_SPARK_JARS := jars/spark/.resolved
STAMP_KAFKA_JARS := jars/kafka/.resolved
STAMP_REST_CATALOG_JARS := jars/rest-catalog/.resolved
STAMP_CONNECT_JARS := jars/kafka-connect/.resolved
# The local Spark driver JVM's class-data archive: the tests' drivers start on it (lakehouse.local.class_archive).
CLASS_ARCHIVE := jars/spark/driver-classes.jsa
# Airflow lives in a virtualenv of its own: its pins are not the project's (orchestration/airflow).
AIRFLOW_VENV := .airflow-venv
STAMP_AIRFLOW := $(AIRFLOW_VENV)/.installed
MVN := mvn -q -B
# uv installs the same pins as pip in a fraction of the time (docs/testing.md#set-up); it reads no
# pip.conf, so it is told to trust the system's certificates and the same local wheel folder.
UV_FLAGS := -q --native-tls $(if $(PIP_FIND_LINKS),--find-links $(PIP_FIND_LINKS))
UV_PIP := $(VENV)/bin/uv pip install $(UV_FLAGS) --python $(PY)

.PHONY: setup jars demo demo-cluster test test-setup test-durations test-unit bqemulator test-topology lint kafka-start kafka-stop cluster-stop stop bench jupyter clean dashboard browser status airflow

# What the product runs on (demo, jobs, the cluster topology); the Kafka Connect jars only the
# tests and benchmarks that race Iceberg's sink need, so `make demo` does not fetch them.
setup: $(STAMP_PY) $(STAMP_SPARK_JARS) $(STAMP_KAFKA_JARS) $(STAMP_REST_CATALOG_JARS)

$(STAMP_PY): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q uv
	$(UV_PIP) -e ".[dev]"
	@touch $@

jars: $(STAMP_SPARK_JARS) $(STAMP_KAFKA_JARS) $(STAMP_REST_CATALOG_JARS) $(STAMP_CONNECT_JARS)

$(STAMP_SPARK_JARS): jars/spark.pom.xml
	rm -rf jars/spark
	$(MVN) -f jars/spark.pom.xml dependency:copy-dependencies -DoutputDirectory=spark -DincludeScope=runtime
	@touch $@

# One Maven run at a time (order-only prerequisites), even under `make -j`: concurrent runs would
# write the same artifacts into one local repository.
$(STAMP_KAFKA_JARS): jars/kafka.pom.xml | $(STAMP_SPARK_JARS)
	rm -rf jars/kafka
	$(MVN) -f jars/kafka.pom.xml dependency:copy-dependencies -DoutputDirectory=kafka -DincludeScope=runtime
	@touch $@

$(STAMP_REST_CATALOG_JARS): jars/rest-catalog.pom.xml | $(STAMP_KAFKA_JARS)
	rm -rf jars/rest-catalog
	$(MVN) -f jars/rest-catalog.pom.xml dependency:copy-dependencies -DoutputDirectory=rest-catalog -DincludeScope=runtime
	@touch $@

# Kafka Connect and Iceberg's sink plugin, for bench/bench_kafka_connect.py: the worker's classpath
# and the plugin's own directory on plugin.path (two profiles of one pom).
$(STAMP_CONNECT_JARS): jars/kafka-connect.pom.xml | $(STAMP_REST_CATALOG_JARS)
	rm -rf jars/kafka-connect
	$(MVN) -f jars/kafka-connect.pom.xml -P worker dependency:copy-dependencies -DoutputDirectory=kafka-connect/worker -DincludeScope=runtime
	$(MVN) -f jars/kafka-connect.pom.xml -P sink dependency:copy-dependencies -DoutputDirectory=kafka-connect/plugins/iceberg -DincludeScope=runtime
	@touch $@

# Rewritten whenever `make jars` resolves jars/spark again (which deletes the folder, archive included).
$(CLASS_ARCHIVE): $(STAMP_SPARK_JARS) $(STAMP_PY)
	$(PY) -m lakehouse.local.class_archive $@

demo: setup
	$(PY) -m lakehouse.local.demo

# The production shape on loopback: 3 Kafka brokers, a Spark master and 2 workers, a gs:// warehouse
# on the GCS emulator, the shared catalog; brought up, run, and taken down again (also on Ctrl-C).
# CATALOG=rest: Iceberg's REST catalog server in front of the PostgreSQL catalog.
CATALOG ?= jdbc
demo-cluster: setup
	$(PY) -m lakehouse.local.demo --topology cluster --catalog $(CATALOG)

# The dashboard is an optional extra, so the core install stays light.
dashboard: setup
	$(UV_PIP) -e ".[dashboard]"
	$(PY) -m dashboard

# The browser tests drive Debian's Chromium headless (vendor browser downloads are not reachable).
browser:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

# Two pytest-xdist workers, each with its own broker, Spark session and catalog: about half the
# suite's time is waiting (JVM start-ups, polls, servers), which the second worker fills
# (docs/testing.md). A module's tests stay on one worker; the topology tests share one cluster
# (tests/conftest.py, pytest_xdist_make_scheduler).
TEST_WORKERS ?= 2
# What the suite needs, made in parallel: downloads (Maven, uv, apt) overlap each other and the
# class archive's Spark run (a fresh clone here, caches warm: 115 s one after another, 99 s so).
test-setup: setup jars browser airflow bqemulator $(CLASS_ARCHIVE)

test:
	$(MAKE) -j 4 --output-sync=target test-setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS)

# The same run, then each test scope's seconds into tests/scope_seconds.json, which orders the
# scopes longest first on the workers: refresh it when modules are added or change much in time.
test-durations: test-setup
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --store-durations

# The pure tests alone (marker `unit`): no JVM, no jars, no broker or emulator; a minute or so.
test-unit: $(STAMP_PY)
	$(VENV)/bin/pytest -q -m unit

# The cluster-topology tests alone (they are part of `make test` too).
test-topology: setup
	$(VENV)/bin/pytest -q tests/topology

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .

kafka-start: setup
	$(PY) -m lakehouse.local.kafka_broker start

kafka-stop:
	@test -x $(PY) && $(PY) -m lakehouse.local.kafka_broker stop || true

cluster-stop:
	@test -x $(PY) && $(PY) -m lakehouse.local.topology stop || true

stop: kafka-stop cluster-stop

airflow: $(STAMP_AIRFLOW)

$(STAMP_AIRFLOW): orchestration/airflow/requirements.txt
	@test -x $(AIRFLOW_VENV)/bin/python || $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/python -m pip install -q uv
	$(AIRFLOW_VENV)/bin/uv pip install $(UV_FLAGS) --python $(AIRFLOW_VENV)/bin/python -r orchestration/airflow/requirements.txt
	@touch $@

# The BigQuery emulator's own virtualenv (lakehouse.local.bigquery_emulator; a file read once made).
bqemulator: $(STAMP_PY)
	$(PY) -m lakehouse.local.bigquery_emulator install

# What is fresh and what is behind; exit 1 when something is stale (docs/operations.md).
status: $(STAMP_PY)
	$(VENV)/bin/lakehouse status

bench: setup jars
	$(PY) -m bench.run_all

jupyter: setup
	$(UV_PIP) -e ".[analyst]"
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --no-browser $(if $(filter 0,$(shell id -u)),--allow-root)

clean: stop
	rm -rf .state
