#!/usr/bin/env python3
"""Fails when a target's imports break the layering (ARCHITECTURE.md, "Targets").

Three checks over every target of Package.swift (read with `swift package dump-package`):
  1. Declared = imported: each first-party module or package product a source file imports
     is declared as a dependency of its target, and each declared one is imported (test
     targets: imports must be declared; they may declare more).
  2. Allowed: a library target depends only on the targets `ALLOWED` lists for it.
  3. Nodes on top: no library depends on a node (a process's target).
Usage: scripts/check-layering.py [--package-json FILE]   (FILE: a saved dump-package output)
"""
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Processes: the executable and the node libraries it runs. Nothing below them may import one.
NODES = {"mambaformer", "RouterNode", "ExpertNode", "Gateway", "LoadGen"}

# The layering, bottom up: each library and the first-party targets it may depend on.
# (nodes → generation / gate → engine → tensors → kernels; the vocabulary is shared.)
C_LIBS = {"CZmq", "COpenBLAS", "COneDNN", "CProtobufC", "CSupport", "CKernels", "CWireProto"}
ALLOWED = {
    "CZmq": set(), "COpenBLAS": set(), "COneDNN": set(), "CProtobufC": set(), "CSupport": set(), "CKernels": set(),
    "CWireProto": {"CProtobufC"},
    "Vocabulary": set(),                       # pure Swift, shared by every layer
    "Tokenizers": set(),
    "Random": set(),                           # the one RNG
    "Kernels": {"COpenBLAS", "COneDNN", "CKernels"},
    "Tensors": {"Kernels"},
    "Engine": {"Tensors", "Kernels", "Random"},          # no BLAS calls of its own: Kernels owns them
    "Gate": {"Vocabulary", "Tensors", "Kernels", "Tokenizers", "Random"},   # a policy: no sockets, no models
    "Generation": {"Vocabulary", "Engine", "Tensors", "Kernels", "Tokenizers", "CSupport"},
    "GateTraining": {"Gate", "Generation", "Engine", "Tensors", "Kernels", "Tokenizers", "Vocabulary", "Random"},
    "Wire": {"Vocabulary", "CZmq", "CProtobufC", "CWireProto", "CSupport"},
    "ClusterConfig": set(),
    "Autoscaling": {"Vocabulary"},             # a policy: no sockets, no processes
    "MetricsEndpoint": set(),
    "GatewayClient": set(),                    # the HTTP API from outside: Foundation only
    "Audit": set(),                            # the audit trail's format, writer and verifier
    "TestCommon": set(),
}

# Modules that come with the toolchain or the OS.
SYSTEM = {"Foundation", "FoundationNetworking", "FoundationEssentials", "Glibc", "Darwin", "Dispatch",
          "XCTest", "Testing", "Synchronization", "_Concurrency", "os", "Musl"}

IMPORT = re.compile(r"^\s*(?:@testable\s+|@_exported\s+|@preconcurrency\s+)*import\s+(?:(?:struct|class|enum|protocol|func|typealias|var|let)\s+)?([A-Za-z_][A-Za-z0-9_]*)", re.M)


def target_dir(target):
    if target.get("path"):
        return os.path.join(ROOT, target["path"])
    base = "Tests" if target["type"] == "test" else "Sources"
    return os.path.join(ROOT, base, target["name"])


def imports_of(directory, excluded):
    found = set()
    for dirpath, dirnames, filenames in os.walk(directory):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in excluded]
        for name in filenames:
            if name.endswith(".swift"):
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    found.update(IMPORT.findall(f.read()))
    return found


def declared_of(target):
    deps = set()
    for dep in target.get("dependencies", []):
        for kind in ("byName", "target", "product"):
            if kind in dep:
                deps.add(dep[kind][0])
    return deps


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--package-json":
        with open(sys.argv[2]) as f:
            package = json.load(f)
    else:
        package = json.loads(subprocess.check_output(["swift", "package", "dump-package"], cwd=ROOT))
    targets = {t["name"]: t for t in package["targets"]}
    first_party = set(targets)
    problems = []
    for name, target in sorted(targets.items()):
        kind = target["type"]
        declared = declared_of(target)
        if kind != "system":
            directory = target_dir(target)
            excluded = {os.path.join(directory, e) for e in target.get("exclude", [])}
            imported = imports_of(directory, excluded) - SYSTEM - {name}
            for module in sorted(imported - declared):
                problems.append(f"{name}: imports {module} without declaring it in Package.swift")
            if kind != "test":
                for module in sorted(declared - imported - C_LIBS):
                    problems.append(f"{name}: declares {module} but never imports it")
        if kind in ("test", "executable") and name not in NODES:
            continue  # tests and tools sit on top of everything
        ours = declared & first_party
        if name in NODES:
            continue
        if name not in ALLOWED:
            problems.append(f"{name}: not in the layering table of scripts/check-layering.py; add it with its allowed dependencies")
            continue
        for dep in sorted(ours - ALLOWED[name]):
            why = "a node" if dep in NODES else "not allowed by the layering"
            problems.append(f"{name}: depends on {dep} ({why}; see ARCHITECTURE.md, Targets)")
    if problems:
        print("check-layering: the targets' dependencies break the layering:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"check-layering: {len(targets)} targets, imports as declared, layering respected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
