"""What the node's metrics cost per task: the handler hooks and one /metrics render.

Prints JSON: ``metrics_hooks_per_task_us`` (the two observer calls a served task
makes: answered + executed), ``noop_calls_per_task_us`` (the same two calls to a
no-op, the same-run baseline), ``render_ms`` (one exposition text) and its size.
Run: ``python benchmarks/bench_metrics.py``.
"""

from __future__ import annotations

import hashlib
import json
import time

from mesh.node.metrics import NodeMetrics, render

root = hashlib.sha256(b"m").digest()
m = NodeMetrics(models=lambda: {root: "tiny-mlp"})
N = 20000


def per_task() -> None:
    m.answered(root, "ok", 0.0012, 300, 500)
    m.executed(root, 4, 0.8)


for _ in range(1000):
    per_task()
t = time.perf_counter()
for _ in range(N):
    per_task()
hook_us = (time.perf_counter() - t) / N * 1e6
t = time.perf_counter()
for _ in range(200):
    body = render(m)
render_ms = (time.perf_counter() - t) / 200 * 1000


# baseline: the same loop calling a no-op
def noop(*a: object) -> None:
    pass


t = time.perf_counter()
for _ in range(N):
    noop(root, "ok", 0.0012, 300, 500)
    noop(root, 4, 0.8)
base_us = (time.perf_counter() - t) / N * 1e6
print(
    json.dumps(
        {
            "metrics_hooks_per_task_us": round(hook_us, 2),
            "noop_calls_per_task_us": round(base_us, 2),
            "render_ms": round(render_ms, 3),
            "exposition_bytes": len(body),
        }
    )
)
