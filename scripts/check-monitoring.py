#!/usr/bin/env python3
"""Checks the shipped monitoring: Deploy/prometheus/alerts.yml and Deploy/grafana/mambaformer.json.

  scripts/check-monitoring.py [--promtool PATH] [--metrics FILE ...]

- `promtool check rules` passes on the alert rules, and on a recording-rules file made of every
  dashboard expression (promtool 2.42 has no stand-alone expression check; Grafana's
  `$__rate_interval` becomes 5m);
- every alert has a runbook entry: a `## Name` heading in RUNBOOK.md, named in its annotation;
- with --metrics (Prometheus text scraped from live nodes): every metric name the rules and the
  dashboard use is exported by one of them (histograms as NAME_bucket/_sum/_count).
Exit status 1 with the reasons when anything fails. Used by MonitoringTests in `make test`.
"""
import argparse
import json
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
ALERTS = ROOT / "Deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "Deploy" / "grafana" / "mambaformer.json"
RUNBOOK = ROOT / "RUNBOOK.md"
METRIC = re.compile(r"\bmambaformer_[a-z0-9_]+")


def dashboard_exprs():
    board = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in board["panels"] for target in panel["targets"]]


def promtool_check(promtool, path):
    run = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    return run.returncode, (run.stdout + run.stderr).strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--promtool", default="promtool")
    parser.add_argument("--metrics", nargs="*", default=[])
    args = parser.parse_args()
    problems = []

    code, out = promtool_check(args.promtool, ALERTS)
    if code != 0:
        problems.append(f"promtool check rules {ALERTS.name}: {out}")

    exprs = dashboard_exprs()
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write("groups:\n  - name: dashboard\n    rules:\n")
        for i, (_, expr) in enumerate(exprs):
            promql = expr.replace("$__rate_interval", "5m")
            f.write(f"      - record: dashboard:panel_{i}\n        expr: {json.dumps(promql)}\n")
        generated = f.name
    code, out = promtool_check(args.promtool, generated)
    if code != 0:
        problems.append(f"dashboard expressions (as recording rules in {generated}): {out}")

    alerts_text = ALERTS.read_text()
    runbook = RUNBOOK.read_text() if RUNBOOK.exists() else ""
    headings = {line[3:].strip().lower() for line in runbook.splitlines() if line.startswith("## ")}
    for name in re.findall(r"^\s*- alert: (\S+)", alerts_text, re.M):
        if name.lower() not in headings:
            problems.append(f"alert {name} has no '## {name}' entry in RUNBOOK.md")
        if f"RUNBOOK.md#{name.lower()}" not in alerts_text:
            problems.append(f"alert {name} does not name its runbook entry (RUNBOOK.md#{name.lower()})")

    if args.metrics:
        exported = set()
        for path in args.metrics:
            for line in pathlib.Path(path).read_text().splitlines():
                if line and not line.startswith("#"):
                    exported.add(re.split(r"[{ ]", line, maxsplit=1)[0])
        used = set(METRIC.findall(alerts_text))
        for _, expr in exprs:
            used |= set(METRIC.findall(expr))
        for name in sorted(used - exported):
            problems.append(f"{name} is used by the alerts or the dashboard but no scraped node exports it")
        print(f"check-monitoring: {len(used)} metric names used, all exported" if not (used - exported) else "", end="")

    for p in problems:
        print(f"check-monitoring: {p}", file=sys.stderr)
    if problems:
        return 1
    print(f"\ncheck-monitoring: alert rules and {len(exprs)} dashboard expressions pass promtool; every alert has a runbook entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
