"""Several orchestrator processes on one state file: how fast they agree.

Three instances run as separate processes (tests/instance_driver.py, driven
over stdin/stdout). The bench measures:

- signal latency: a start through instance A returns; when does the
  `server_started` signal (marked instance=A) reach B and C's receivers
  (their own sync thread, no request to them in between);
- leader takeover: SIGKILL the leader; when does another instance lead
  (measured by polling `is_leader` through the driver);
- concurrent starts: every server started through all three at once;
  how many processes exist afterwards (must be one per server).

Run: python bench/bench_instances.py [--rounds 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from instance_driver import Instance  # noqa: E402

SLEEP = shutil.which("sleep") or "/bin/sleep"


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"{statistics.median(values) * 1000:8.1f} {p95 * 1000:8.1f} {values[-1] * 1000:8.1f}"


def trio(tmp: Path, registry: dict, tag: str) -> list[Instance]:
    state, logs = tmp / f"{tag}.json", tmp / f"{tag}-logs"
    return [Instance(state, logs, name, registry, interval=0.2) for name in ("A", "B", "C")]


def close_all(instances: list[Instance]) -> None:
    alive = [inst for inst in instances if inst.proc.poll() is None]
    if alive:
        alive[0].call("quit", stop=True)
    for inst in instances:
        inst.close()


def signal_latency(tmp: Path, rounds: int) -> list[float]:
    instances = trio(tmp, {"w": {"command": [SLEEP, "600"]}}, "latency")
    a, b, c = instances
    out: list[float] = []
    try:
        for _ in range(rounds):
            for inst in instances:
                inst.call("events")
            assert a.call("start", id="w")["success"]
            done = time.time()
            for other in (b, c):
                deadline = time.monotonic() + 5
                while True:
                    got = [e for e in other.call("events") if e["event"] == "server_started"]
                    if got:
                        out.append(max(0.0, got[0]["at"] - done))
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit("server_started never arrived")
                    time.sleep(0.05)
            assert a.call("stop", id="w")["success"]
    finally:
        close_all(instances)
    return out


def takeover(tmp: Path, rounds: int) -> list[float]:
    out: list[float] = []
    for n in range(rounds):
        instances = trio(tmp, {"w": {"command": [SLEEP, "600"]}}, f"takeover{n}")
        a, b, c = instances
        try:
            a.kill()
            killed = time.monotonic()
            while not (b.call("leader")["is_leader"] or c.call("leader")["is_leader"]):
                if time.monotonic() - killed > 5:
                    raise SystemExit("no new leader")
            out.append(time.monotonic() - killed)
        finally:
            close_all(instances)
    return out


def concurrent_starts(tmp: Path, servers: int) -> tuple[int, int, int]:
    ids = [f"s{i}" for i in range(servers)]
    instances = trio(tmp, {sid: {"command": [SLEEP, "600"]} for sid in ids}, "concurrent")
    wins = 0
    try:
        for sid in ids:
            for inst in instances:
                inst.send("start", id=sid)
            wins += sum(1 for inst in instances if inst.read()["success"])
        procs = 0
        for inst in instances:  # the servers are the drivers' children
            for proc in psutil.Process(inst.pid).children():
                try:
                    if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get(
                            "PROCSYNC_ID") in ids:
                        procs += 1
                except psutil.Error:
                    continue
    finally:
        close_all(instances)
    return servers, wins, procs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="procsync-bench-") as tmp:
        root = Path(tmp)
        latency = signal_latency(root, args.rounds)
        lead = takeover(root, max(3, args.rounds // 4))
        servers, wins, procs = concurrent_starts(root, args.rounds)
    print(f"{'measure':44} {'median':>8} {'p95':>8} {'max':>8}   (ms)")
    print(f"{'start via A -> server_started at B and C':44} {ms(latency)}")
    print(f"{'SIGKILL leader -> another instance leads':44} {ms(lead)}")
    print(f"concurrent starts: {servers} servers x 3 instances -> {wins} successful starts, "
          f"{procs} processes")


if __name__ == "__main__":
    main()
