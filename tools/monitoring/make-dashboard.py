#!/usr/bin/env python3
"""Writes Deploy/grafana/mambaformer.json, the Grafana dashboard of a MambaFormer cluster.

The panels are listed here once (title, PromQL, legend); run this after changing them and
commit the JSON. scripts/check-monitoring.py checks every expression with promtool and the
metric names against a live cluster (MonitoringTests).
"""
import json
import pathlib

ANSWERS = 'endpoint=~"/v1/answer|/v1/chat/completions"'
RATE = "$__rate_interval"

# (title, unit, [(expr, legend)])
PANELS = [
    ("Requests per second by status", "reqps",
     [(f'sum by (status) (rate(mambaformer_gateway_requests_total{{{ANSWERS}}}[{RATE}]))', "{{status}}")]),
    ("Errors per second", "reqps",
     [(f'sum by (status) (rate(mambaformer_gateway_requests_total{{{ANSWERS}, status=~"[45].."}}[{RATE}]))', "HTTP {{status}}"),
      (f'sum by (outcome) (rate(mambaformer_gateway_answers_total{{outcome!="ok"}}[{RATE}]))', "answer {{outcome}}")]),
    ("Answer latency", "s",
     [(f'histogram_quantile(0.5, sum by (le) (rate(mambaformer_gateway_request_duration_seconds_bucket{{{ANSWERS}}}[{RATE}])))', "p50"),
      (f'histogram_quantile(0.99, sum by (le) (rate(mambaformer_gateway_request_duration_seconds_bucket{{{ANSWERS}}}[{RATE}])))', "p99")]),
    ("Time to first span", "s",
     [(f'histogram_quantile(0.5, sum by (le) (rate(mambaformer_gateway_first_span_seconds_bucket[{RATE}])))', "p50"),
      (f'histogram_quantile(0.99, sum by (le) (rate(mambaformer_gateway_first_span_seconds_bucket[{RATE}])))', "p99")]),
    ("Tokens per second by expert", "short",
     [(f'sum by (expert) (rate(mambaformer_gateway_tokens_total[{RATE}]))', "{{expert}}")]),
    ("ET5 share of tokens", "percentunit",
     [(f'sum(rate(mambaformer_gateway_tokens_total{{expert="et5"}}[{RATE}])) / sum(rate(mambaformer_gateway_tokens_total[{RATE}]))', "ET5 share")]),
    ("Replicas per pool", "short",
     [('max by (pool) (mambaformer_router_replicas)', "{{pool}} live"),
      ('max by (pool) (mambaformer_autoscaler_desired_replicas)', "{{pool}} desired (autoscaler)")]),
    ("Spans queued at the routers", "short",
     [('sum by (pool) (mambaformer_router_queue_depth)', "{{pool}}")]),
    ("Retries, fallbacks and moved answers per second", "ops",
     [(f'sum(rate(mambaformer_router_span_retries_total[{RATE}]))', "span retries"),
      (f'sum(rate(mambaformer_router_fallbacks_total[{RATE}]))', "fallbacks to the other pool"),
      (f'sum(rate(mambaformer_router_answers_resumed_total[{RATE}]))', "answers resumed after a router died")]),
    ("Routers reachable from each gateway", "short",
     [('min by (instance) (mambaformer_gateway_routers_reachable)', "{{instance}} reachable"),
      ('max by (instance) (mambaformer_gateway_routers_configured)', "{{instance}} configured")]),
    ("Expert batches", "short",
     [('sum by (pool) (mambaformer_expert_active_sequences)', "{{pool}} running"),
      ('sum by (pool) (mambaformer_expert_waiting_spans)', "{{pool}} waiting"),
      ('sum by (pool) (mambaformer_expert_capacity)', "{{pool}} capacity")]),
    ("Answers in flight at the gateways", "short",
     [('sum(mambaformer_gateway_in_flight)', "in flight")]),
]


def dashboard():
    panels = []
    for i, (title, unit, targets) in enumerate(PANELS):
        panels.append({
            "id": i + 1,
            "type": "timeseries",
            "title": title,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
            "targets": [{"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend}
                        for j, (expr, legend) in enumerate(targets)],
        })
    return {
        "title": "MambaFormer cluster",
        "uid": "mambaformer-cluster",
        "tags": ["mambaformer"],
        "timezone": "browser",
        "schemaVersion": 38,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [{
            "name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0,
        }]},
        "panels": panels,
    }


if __name__ == "__main__":
    out = pathlib.Path(__file__).resolve().parents[2] / "Deploy" / "grafana" / "mambaformer.json"
    out.write_text(json.dumps(dashboard(), indent=2) + "\n")
    print(f"wrote {out}")
