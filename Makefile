# Two commands matter: `make demo` and `make test`. Both set everything up on a fresh machine
# (virtualenv, Python packages, JVM jars from Maven Central) and are cheap when it is done.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_SPARK_JARS := jars/spark/.resolved
STAMP_KAFKA_JARS := jars/kafka/.resolved
STAMP_REST_CATALOG_JARS := jars/rest-catalog/.resolved
MVN := mvn -q -B

.PHONY: setup jars demo test lint kafka-start kafka-stop stop bench jupyter clean dashboard browser

setup: $(STAMP_PY) jars

$(STAMP_PY): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	@touch $@

jars: $(STAMP_SPARK_JARS) $(STAMP_KAFKA_JARS) $(STAMP_REST_CATALOG_JARS)

$(STAMP_SPARK_JARS): jars/spark.pom.xml
	rm -rf jars/spark
	$(MVN) -f jars/spark.pom.xml dependency:copy-dependencies -DoutputDirectory=spark -DincludeScope=runtime
	@touch $@

$(STAMP_KAFKA_JARS): jars/kafka.pom.xml
	rm -rf jars/kafka
	$(MVN) -f jars/kafka.pom.xml dependency:copy-dependencies -DoutputDirectory=kafka -DincludeScope=runtime
	@touch $@

$(STAMP_REST_CATALOG_JARS): jars/rest-catalog.pom.xml
	rm -rf jars/rest-catalog
	$(MVN) -f jars/rest-catalog.pom.xml dependency:copy-dependencies -DoutputDirectory=rest-catalog -DincludeScope=runtime
	@touch $@

demo: setup
	$(PY) -m lakehouse.local.demo

# The dashboard is an optional extra, so the core install stays light.
dashboard: setup
	$(PY) -m pip install -q -e ".[dashboard]"
	$(PY) -m dashboard

# The browser tests drive Debian's Chromium headless (vendor browser downloads are not reachable).
browser:
	@test -x /usr/bin/chromium || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)

test: setup browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/pytest -q

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .

kafka-start: setup
	$(PY) -m lakehouse.local.kafka_broker start

kafka-stop:
	@test -x $(PY) && $(PY) -m lakehouse.local.kafka_broker stop || true

stop: kafka-stop

bench: setup
	$(PY) -m bench.run_all

jupyter: setup
	$(PY) -m pip install -q -e ".[analyst]"
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --no-browser

clean: stop
	rm -rf .state
