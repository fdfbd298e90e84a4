"""`edgemnist serve` under load: requests per second and latency percentiles at concurrency 1 and 8.

Usage: python benchmarks/bench_serve.py [--model MODEL.tflite] [--json benchmarks/results/serve.json]
       python benchmarks/bench_serve.py --model MODEL.tflite --requests 40 --warmup 4 --images 10   (a smoke run)

Starts `edgemnist serve MODEL --host 127.0.0.1 --port <free> --quiet` as a child process (the
shipped int8 model by default; `--workers`, `--threads` and `--no-gate` pass on to it), renders
`--images` 200x200 JPEG photos of MNIST test digits (each digit as ink on paper: uneven light,
blur, noise, JPEG 35-90, edgemnist.data.synthetic's photo effects), then, from this process (the
load; the server is another), sends `--requests` `POST /predict` requests at each concurrency
in `--concurrency` (default 1 and 8), each client thread on its own keep-alive connection,
after `--warmup` untimed requests per client. Per concurrency: requests/s (requests / wall
time), p50/p90/p99/mean/std latency in ms (send to full answer read), errors (a non-200 or a
failed connection) and the share of answers whose digit is the image's label.
Goal (issue 31, on the 2-core reference machine): >= 300 requests/s at concurrency 8 with the
int8 model, p99 <= 50 ms. The server and the load share the machine's cores; the load average
at the start is recorded, since anything else running slows both.
Prints a table and writes JSON (machine, backend and version, settings, rows).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from edgemnist.data import load_split
from edgemnist.data.synthetic import as_photo, jpeg

SIDE = 200  # the images: 200x200 JPEG
START_TIMEOUT = 120.0  # seconds the server may take to load its models and print its start-up line


def digit_jpegs(count: int, seed: int) -> tuple:
    """(JPEG bytes, labels): the first `count` MNIST test digits as photos of ink on paper, SIDE x SIDE."""
    rng = np.random.default_rng(seed)
    split = load_split("test", limit=count)
    images = [jpeg(as_photo(d.astype(np.float32) / 255.0, (SIDE, SIDE), rng, float(rng.uniform(0.3, 0.6))), rng)
              for d in split.images]
    return images, [int(label) for label in split.labels]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model, port: int, server_args: list) -> subprocess.Popen:
    """`edgemnist serve` in a child process, once its start-up line says it answers.

    Raises:
        RuntimeError: it exited or said nothing within START_TIMEOUT (its stderr is in the message).
    """
    command = [sys.executable, "-m", "edgemnist", "serve", *([str(model)] if model else []), "--host", "127.0.0.1",
               "--port", str(port), "--quiet", *server_args]
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(child.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if any(line.startswith("serving ") for line in lines):
            return child
        if child.poll() is not None:
            reader.join(5)
            break
        time.sleep(0.05)
    child.kill()
    child.wait()
    raise RuntimeError(f"edgemnist serve did not start: {' '.join(command)}\n{''.join(lines)[-2000:]}")


def get_json(port: int, path: str) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _stat_fields(pid) -> list:
    """/proc/PID/stat's fields after the command name (field 3 onwards); [] where unreadable."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def process_cpu_seconds(pid: int):
    """User + system CPU seconds used so far by a process and its child processes (`serve --processes`), from
    Linux's /proc; None where that cannot be read."""
    own = _stat_fields(pid)
    if not own:
        return None
    children = [f for f in (_stat_fields(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
                if len(f) > 12 and f[1] == str(pid)]  # field 4: the parent's pid
    ticks = sum(int(f[11]) + int(f[12]) for f in [own, *children])  # utime, stime (fields 14, 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def drive(port: int, images: list, labels: list, concurrency: int, requests: int, warmup: int,
          server_pid: int) -> dict:
    """`requests` POST /predict from `concurrency` threads, each on one keep-alive connection (images in turn).

    Besides the wall-clock figures, the CPU time the server and this load process spent per request:
    what a request costs whatever else runs on the machine (a busy machine stretches the latencies).
    """
    latencies: list = []
    outcomes = {"errors": 0, "answered": 0, "right": 0}
    lock = threading.Lock()
    start = threading.Barrier(concurrency + 1)
    share = [requests // concurrency + (1 if i < requests % concurrency else 0) for i in range(concurrency)]

    def client(worker: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, errors, answered, right = [], 0, 0, 0

        def one(k: int, timed: bool) -> None:
            nonlocal errors, answered, right
            index = (worker * 7919 + k) % len(images)
            began = time.perf_counter()
            try:
                conn.request("POST", "/predict", body=images[index], headers={"Content-Type": "image/jpeg"})
                response = conn.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException):
                conn.close()  # http.client reconnects on the next request
                errors += timed
                return
            elapsed = time.perf_counter() - began
            if not timed:
                return
            mine.append(elapsed)
            if response.status != 200:
                errors += 1
                return
            answered += 1
            right += json.loads(body).get("digit") == labels[index]

        for k in range(warmup):
            one(k, timed=False)
        start.wait()
        for k in range(share[worker]):
            one(warmup + k, timed=True)
        conn.close()
        with lock:
            latencies.extend(mine)
            outcomes["errors"] += errors
            outcomes["answered"] += answered
            outcomes["right"] += right

    threads = [threading.Thread(target=client, args=(w,)) for w in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    server_cpu, load_cpu = process_cpu_seconds(server_pid), time.process_time()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    server_cpu = None if server_cpu is None else process_cpu_seconds(server_pid) - server_cpu
    load_cpu = time.process_time() - load_cpu
    ms = np.asarray(latencies) * 1000.0
    answered = outcomes["answered"]
    return {
        "concurrency": concurrency,
        "requests": requests,
        "seconds": round(wall, 3),
        "requests_per_second": round(requests / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "mean_ms": round(float(ms.mean()), 2),
        "std_ms": round(float(ms.std()), 2),
        "errors": outcomes["errors"],
        "server_cpu_ms_per_request": None if server_cpu is None else round(server_cpu / requests * 1000, 3),
        "load_cpu_ms_per_request": round(load_cpu / requests * 1000, 3),
        "right": round(outcomes["right"] / answered, 4) if answered else None,
    }


def format_table(rows: list) -> str:
    lines = [f"{'concurrency':>11} {'requests/s':>10} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'mean ms':>7} "
             f"{'errors':>6} {'right':>6} {'server CPU ms/req':>17}"]
    for r in rows:
        right = "-" if r["right"] is None else f"{r['right']:.1%}"
        cpu = "-" if r["server_cpu_ms_per_request"] is None else f"{r['server_cpu_ms_per_request']:.2f}"
        lines.append(f"{r['concurrency']:>11} {r['requests_per_second']:>10.1f} {r['p50_ms']:>7.2f} {r['p90_ms']:>7.2f} "
                     f"{r['p99_ms']:>7.2f} {r['mean_ms']:>7.2f} {r['errors']:>6} {right:>6} {cpu:>17}")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="a .tflite file or a shipped model's name (default: the shipped int8 model)")
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per concurrency (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed requests per client first (default %(default)s)")
    parser.add_argument("--concurrency", default="1,8", help="client threads, comma-separated (default %(default)s)")
    parser.add_argument("--images", type=int, default=200, help="distinct MNIST test digits sent (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="for the photo effects (default %(default)s)")
    parser.add_argument("--workers", type=int, help="the server's --workers (default: its own)")
    parser.add_argument("--processes", type=int, help="the server's --processes (default: its own)")
    parser.add_argument("--threads", type=int, help="the server's interpreter --threads (default: its own)")
    parser.add_argument("--no-gate", action="store_true", help="the server runs without the digit-or-not gate")
    parser.add_argument("--note", help="a line kept in the JSON (what the model is when it is not the shipped one)")
    parser.add_argument("--json", default="benchmarks/results/serve.json", help="where to write the results")
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",")]
    if any(c < 1 for c in args.levels) or args.requests < max(args.levels) or args.images < 1 or args.warmup < 0:
        parser.error("--concurrency levels >= 1, --requests >= the largest level, --images >= 1, --warmup >= 0")
    return args


def main(argv=None) -> int:
    from edgemnist.artifacts import atomic_write_json
    from edgemnist.runtime.machine import machine_info

    args = parse_args(argv)
    server_args = [*(["--workers", str(args.workers)] if args.workers else []),
                   *(["--processes", str(args.processes)] if args.processes else []),
                   *(["--threads", str(args.threads)] if args.threads else []),
                   *(["--no-gate"] if args.no_gate else [])]
    images, labels = digit_jpegs(args.images, args.seed)
    load_average = [round(x, 2) for x in os.getloadavg()]
    port = free_port()
    server = start_server(args.model, port, server_args)
    try:
        health = get_json(port, "/health")
        manifest = get_json(port, "/model")
        rows = [drive(port, images, labels, c, args.requests, args.warmup, server.pid) for c in args.levels]
    finally:
        server.terminate()
        server.wait(30)
    results = {
        "model": health["model"],
        "model_sha256": manifest.get("sha256"),
        "note": args.note,
        "backend": health["backend"],
        "backend_version": health["backend_version"],
        "server": {key: health[key] for key in ("processes", "workers", "threads", "gate", "prepare", "max_bytes")},
        "server_command": ["edgemnist", "serve", *([args.model] if args.model else []), "--quiet", *server_args],
        "images": {"count": len(images), "side": SIDE, "format": "JPEG", "source": "MNIST test digits as photos",
                   "mean_bytes": round(float(np.mean([len(i) for i in images])), 1)},
        "settings": {"requests": args.requests, "warmup_per_client": args.warmup, "concurrency": args.levels,
                     "seed": args.seed, "keep_alive": True},
        "machine": machine_info(),
        "load_average_at_start": load_average,
        "goal": {"concurrency": 8, "requests_per_second": 300, "p99_ms": 50},
        "rows": rows,
    }
    print(f"{health['model']} ({health['backend']} {health['backend_version']}, {health['processes']} process(es) x "
          f"{health['workers']} worker(s), {health['threads']} thread(s) each; load average at start "
          f"{load_average[0]})")
    print(format_table(rows))
    atomic_write_json(args.json, results)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
