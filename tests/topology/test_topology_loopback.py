"""Every server of the cluster topology listens on loopback only, the REST catalog server among them
(Iceberg's own ``RESTCatalogServer.main`` binds every interface; ours binds ``local.rest_catalog_bind_address``)."""

from __future__ import annotations

from lakehouse.local.processes import read_pid
from lakehouse.local.topology import ClusterTopology
from tests.listening import beyond_loopback, listening_addresses


def test_the_rest_catalog_brokers_and_spark_master_of_the_cluster_listen_on_loopback_only(
    cluster: ClusterTopology,
) -> None:
    assert cluster.rest_catalog is not None
    rest_pid = read_pid(cluster.rest_catalog.pid_file)
    broker_pids = [read_pid(node.pid_file) for node in cluster.kafka.nodes]
    master = cluster.spark.master_record()
    pids = [pid for pid in (rest_pid, *broker_pids, master.pid if master else None) if pid is not None]
    assert rest_pid is not None and len(pids) == 5, pids

    listening = listening_addresses(pids)

    rest_sockets = [entry for entry in listening if entry[0] == rest_pid]
    assert [(address, port) for _, address, port in rest_sockets] == [("127.0.0.1", cluster.rest_catalog.port)]
    assert {port for _, _, port in listening} >= {cluster.rest_catalog.port, cluster.spark.master_port}
    assert not beyond_loopback(listening), listening
