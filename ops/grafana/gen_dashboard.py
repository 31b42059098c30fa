#!/usr/bin/env python3
"""Writes vigil.json, the Grafana dashboard for a vigil broker's /metrics.
Edit the panel list here and re-run (`python3 ops/grafana/gen_dashboard.py`);
tests/clients/test_ops.py checks every query against a real broker's series."""

import json
from pathlib import Path

R = "$__rate_interval"
DEP = 'deployment=~"$deployment"'

# (row title, [(panel title, unit, [(legend, expr)])])
ROWS = [
    ("Kafka", [
        ("Requests / s by API", "reqps", [("{{api}}", f"sum by (api) (rate(vigil_requests_total[{R}]))")]),
        ("Request latency p99 by API", "s", [(
            "{{api}}",
            f"histogram_quantile(0.99, sum by (le, api) (rate(vigil_request_duration_seconds_bucket[{R}])))")]),
        ("Errors / s by API and error", "reqps", [(
            "{{api}} {{error}}", f"sum by (api, error) (rate(vigil_request_errors_total[{R}]))")]),
        ("Connections", "short", [
            ("open", "vigil_connections"),
            ("requests in flight", "vigil_requests_in_flight"),
            ("accept errors / s", f"rate(vigil_accept_errors_total[{R}])"),
        ]),
    ]),
    ("Storage", [
        ("Appended and uploaded bytes / s", "Bps", [
            ("appended", f"rate(vigil_storage_appended_bytes_total[{R}])"),
            ("uploaded", f"rate(vigil_storage_uploaded_bytes_total[{R}])"),
        ]),
        ("Upload lag", "s", [("lag", "vigil_storage_upload_lag_seconds")]),
        ("Uploads and failures / s", "ops", [
            ("uploads", f"rate(vigil_storage_uploads_total[{R}])"),
            ("failures", f"rate(vigil_storage_upload_failures_total[{R}])"),
        ]),
        ("Block cache hit ratio", "percentunit", [("hit ratio", "vigil_block_cache_hit_ratio")]),
        ("Block cache", "bytes", [("cached", "vigil_block_cache_bytes")]),
        ("Object store requests / s", "reqps", [(
            "{{op}} {{outcome}}", f"sum by (op, outcome) (rate(vigil_object_store_requests_total[{R}]))")]),
        ("Object store mean request time", "s", [(
            "{{op}}",
            f"sum by (op) (rate(vigil_object_store_request_seconds_total[{R}])) "
            f"/ sum by (op) (rate(vigil_object_store_requests_total[{R}]))")]),
        ("Object store bytes / s", "Bps", [
            ("uploaded", f"rate(vigil_object_store_bytes_uploaded_total[{R}])"),
            ("downloaded", f"rate(vigil_object_store_bytes_downloaded_total[{R}])"),
        ]),
    ]),
    ("Detectors", [
        ("Records / s", "rowsps", [(
            "{{deployment}}", f"sum by (deployment) (rate(vigil_detector_records_total{{{DEP}}}[{R}]))")]),
        ("Alerts / s", "short", [(
            "{{deployment}}", f"sum by (deployment) (rate(vigil_detector_alerts_total{{{DEP}}}[{R}]))")]),
        ("Lag (records)", "short", [(
            "{{deployment}}", f"sum by (deployment) (vigil_detector_lag_records{{{DEP}}})")]),
        ("Event age (newest record processed)", "s", [(
            "{{deployment}}", f"max by (deployment) (vigil_detector_event_age_seconds{{{DEP}}})")]),
        ("Throttled: share of time resting (budget, or a replay yielding to writes)", "percentunit", [(
            "{{deployment}}", f"sum by (deployment) (rate(vigil_detector_throttled_seconds_total{{{DEP}}}[{R}]))")]),
        ("Failed batches and bad records / s", "short", [
            ("{{deployment}} failed batches",
             f"sum by (deployment) (rate(vigil_detector_failed_batches_total{{{DEP}}}[{R}]))"),
            ("{{deployment}} bad records",
             f"sum by (deployment) (rate(vigil_detector_bad_records_total{{{DEP}}}[{R}]))"),
        ]),
        ("Deployments by state", "short", [("{{state}}", "sum by (state) (vigil_detector_deployments)")]),
        ("Failed deployments", "short", [("{{deployment}}", f"vigil_detector_failed{{{DEP}}}")]),
        ("Compiled modules", "short", [("compiled", "vigil_detector_compiled_modules")]),
    ]),
    ("Admin API", [
        ("Admin requests / s", "reqps", [(
            "{{method}} {{route}} {{status}}",
            f"sum by (method, route, status) (rate(vigil_admin_requests_total[{R}]))")]),
        ("Admin latency p99", "s", [(
            "{{route}}",
            f"histogram_quantile(0.99, sum by (le, route) (rate(vigil_admin_request_duration_seconds_bucket[{R}])))")]),
    ]),
]


def panels():
    out, pid, y = [], 1, 0
    for title, row in ROWS:
        out.append({"type": "row", "title": title, "id": pid, "collapsed": False,
                    "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        pid, y = pid + 1, y + 1
        for i, (ptitle, unit, targets) in enumerate(row):
            out.append({
                "type": "timeseries", "title": ptitle, "id": pid,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": y + 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
                "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend,
                             "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                            for j, (legend, expr) in enumerate(targets)],
            })
            pid += 1
        y += 8 * ((len(row) + 1) // 2)
    return out


DASHBOARD = {
    "title": "vigil",
    "uid": "vigil-broker",
    "description": "A vigil broker: Kafka requests, storage (WAL uploads, block cache, object store) and detectors.",
    "tags": ["vigil", "kafka"],
    "timezone": "browser",
    "schemaVersion": 39,
    "version": 1,
    "refresh": "10s",
    "time": {"from": "now-1h", "to": "now"},
    "templating": {"list": [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"},
        {"name": "deployment", "type": "query", "label": "Deployment", "includeAll": True, "multi": True,
         "allValue": ".*", "refresh": 2,
         "datasource": {"type": "prometheus", "uid": "${datasource}"},
         "definition": "label_values(vigil_detector_records_total, deployment)",
         "query": {"query": "label_values(vigil_detector_records_total, deployment)", "refId": "deployments"}},
    ]},
    "panels": panels(),
}

if __name__ == "__main__":
    path = Path(__file__).with_name("vigil.json")
    path.write_text(json.dumps(DASHBOARD, indent=2) + "\n")
    print(f"wrote {path}")
