"""/metrics is one valid OpenMetrics page: parsed by prometheus_client's strict
OpenMetrics parser (any error fails the test), with plausible values after
real produce, consume and detector traffic."""

from __future__ import annotations

import json
import urllib.request

from confluent_kafka import Producer
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from detectors import admin_of, limits, spec, wait_caught_up, wasm_bytes
from helpers import ck_consume, ck_consumer, ck_create_topic, unique_name

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PRODUCES = 6


def scrape(broker) -> dict:
    """GET /metrics, checked and parsed strictly: {family name: family}."""
    with urllib.request.urlopen(broker.admin_url + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers.get("content-type") == CONTENT_TYPE, resp.headers.get("content-type")
        text = resp.read().decode()
    assert text.endswith("# EOF\n"), text[-200:]
    families = {}
    for fam in text_string_to_metric_families(text):  # raises on anything invalid
        assert fam.name not in families, f"family {fam.name} appears twice"
        families[fam.name] = fam
    return families


def value(families: dict, family: str, sample: str, **labels) -> float:
    fam = families.get(family)
    assert fam is not None, f"no family {family}; have {sorted(families)}"
    hits = [s.value for s in fam.samples
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(hits) == 1, f"{sample}{labels}: {len(hits)} samples in {fam.samples}"
    return hits[0]


def test_metrics_page_is_strict_openmetrics_with_plausible_values(broker):
    admin = admin_of(broker)
    topic = unique_name("metrics-in")
    ck_create_topic(broker.bootstrap, topic, 1)

    # One acked produce request per record: flush after each.
    p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    sent = 0
    for i in range(PRODUCES):
        v = json.dumps({"amount": 10.0 + i}).encode()
        # ck_consume reads records the way the other suites write them.
        p.produce(topic, key=b"k", value=v, headers=[("vigil-id", f"m{i}".encode())])
        assert p.flush(15) == 0
        sent += len(v)
    c = ck_consumer(broker.bootstrap, unique_name("metrics-g"))
    c.subscribe([topic])
    got = ck_consume(c, want=PRODUCES, timeout=30)
    c.close()
    assert len(got) == PRODUCES

    # A detector over the topic, for the deployment series.
    module = admin.upload(wasm_bytes("vigil_plugin_zscore"))["hash"]
    name = unique_name("metrics-det")
    admin.deploy(spec(name, module, topic, unique_name("metrics-out"), {"field": "amount"},
                      value_schema={"amount": "float64"}, start="earliest", limits=limits()))
    st = wait_caught_up(admin, name, {(topic, 0): PRODUCES})
    admin.expect_error(404, "GET", "/v1/deployments/ghost")

    m = scrape(broker)

    # Kafka requests: counters are declared without _total, sampled with it.
    assert m["vigil_requests"].type == "counter"
    assert value(m, "vigil_requests", "vigil_requests_total", api="Produce") >= PRODUCES
    assert value(m, "vigil_requests", "vigil_requests_total", api="Fetch") >= 1
    assert m["vigil_request_duration_seconds"].type == "histogram"
    assert value(m, "vigil_request_duration_seconds", "vigil_request_duration_seconds_count",
                 api="Produce") >= PRODUCES
    assert value(m, "vigil_connections", "vigil_connections") >= 0

    # Log and object store, read at scrape time.
    assert value(m, "vigil_storage_appended_bytes", "vigil_storage_appended_bytes_total") >= sent
    assert m["vigil_object_store_requests"].type == "counter"
    assert len(m["vigil_object_store_requests"].samples) == 13 * 5  # every op x outcome
    # The module upload wrote to the store.
    assert value(m, "vigil_object_store_requests", "vigil_object_store_requests_total",
                 op="put", outcome="ok") >= 1
    assert m["vigil_block_cache_hit_ratio"].type == "gauge"

    # The deployment's progress, as its status says.
    records = value(m, "vigil_detector_records", "vigil_detector_records_total",
                    deployment=name, topic=topic, partition="0")
    assert records >= PRODUCES, st
    assert value(m, "vigil_detector_lag_records", "vigil_detector_lag_records",
                 deployment=name, topic=topic, partition="0") >= 0
    assert value(m, "vigil_detector_deployments", "vigil_detector_deployments", state="running") >= 1
    assert value(m, "vigil_detector_failed", "vigil_detector_failed", deployment=name) == 0

    # Admin HTTP requests, by route pattern and status.
    assert value(m, "vigil_admin_requests", "vigil_admin_requests_total",
                 method="POST", route="/v1/deployments", status="201") >= 1
    assert value(m, "vigil_admin_requests", "vigil_admin_requests_total",
                 method="GET", route="/v1/deployments/{name}", status="404") >= 1
