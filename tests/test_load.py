"""Load: 50 threads on one orchestrator, and 100 HTTP clients on a real `procsync serve`.

Each test runs random actions (start / stop / restart) and status reads for a
bounded time, under a watchdog that dumps every thread's stack and fails the
test when any single call takes over 30 s (a deadlock, or something as bad).
Afterwards, once things settle: no call raised, no HTTP answer was a 5xx,
and every server's status matches what really runs (a running server has
exactly one process tree, one spawn; a stopped one has none).

CI runs each load for a few seconds; ``PROCSYNC_LOAD_SECONDS=60`` runs each
for a minute. ``PROCSYNC_LOAD_SEED`` fixes the random choices.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers import (
    PY,
    RUN_MARKER,
    free_port,
    kill_marked,
    listener_code,
    marked_processes,
    wait_until,
)
from test_chaos import scan

from procsync import ServerOrchestrator

SECONDS = float(os.environ.get("PROCSYNC_LOAD_SECONDS") or 0)  # 0: the CI defaults below
ORCH_SECONDS = SECONDS or 15.0
HTTP_SECONDS = SECONDS or 8.0
SEED = int(os.environ.get("PROCSYNC_LOAD_SEED") or random.SystemRandom().randrange(2**32))
STUCK = 30.0  # a single call taking longer than this fails the test
STABLE = {"running", "stopped", "crashed", "exited", "fatal"}
EXE = Path(sys.executable).with_name("procsync")
PROCSYNC = [str(EXE)] if EXE.exists() else [sys.executable, "-m", "procsync"]
SLEEPER = "import time\ntime.sleep(600)\n"
TREE = "import subprocess, sys\nsubprocess.Popen(['sleep', '600']).wait()\nsys.exit(1)\n"
CRASHY = "import time\ntime.sleep(0.3)\nraise SystemExit(1)\n"


def servers(*, crashy: bool) -> dict[str, dict[str, Any]]:
    """A few small real servers: listeners, sleepers, a parent with a child, maybe a crasher."""
    common = {"stop_timeout": 3, "start_timeout": 20}
    out: dict[str, dict[str, Any]] = {}
    for n in range(3):
        port = free_port()
        out[f"web{n}"] = {"command": [PY, "-c", listener_code(port)], "ports": [port], **common}
    for n in range(2):
        out[f"sleep{n}"] = {"command": [PY, "-c", SLEEPER], **common}
    out["tree"] = {"command": [PY, "-c", TREE], "autorestart": "on-failure", "max_restarts": 3,
                   "backoff_initial": 0.1, **common}
    if crashy:  # exits 1 soon after every start, restarts twice, then is fatal
        out["crashy"] = {"command": [PY, "-c", CRASHY], "autorestart": "on-failure", "max_restarts": 2,
                         "backoff_initial": 0.1, "backoff_max": 0.2, **common}
    return out


# ----------------------------------------------------------------- the watchdog


def all_stacks() -> str:
    """Every thread's current stack, named."""
    names = {t.ident: t.name for t in threading.enumerate()}
    parts = []
    for ident, frame in sys._current_frames().items():
        parts.append(f"--- thread {names.get(ident, '?')} ({ident})\n" + "".join(traceback.format_stack(frame)))
    return "\n".join(parts)


class Watchdog:
    """Times every call; when one runs over `limit` s, dumps all stacks and trips."""

    def __init__(self, limit: float = STUCK, on_trip: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.on_trip = on_trip
        self.tripped: str | None = None
        self.calls = 0
        self.max_latency = 0.0
        self.slowest = ""
        self._lock = threading.Lock()
        self._inflight: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @contextlib.contextmanager
    def call(self, what: str) -> Iterator[None]:
        ident, began = threading.get_ident(), time.monotonic()
        with self._lock:
            self._inflight[ident] = (what, began)
        try:
            yield
        finally:
            took = time.monotonic() - began
            with self._lock:
                del self._inflight[ident]
                self.calls += 1
                if took > self.max_latency:
                    self.max_latency, self.slowest = took, what

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            now = time.monotonic()
            with self._lock:
                late = [(what, now - began) for what, began in self._inflight.values()
                        if now - began > self.limit]
            if late:
                what, age = late[0]
                self.tripped = (f"{what} has not returned after {age:.1f}s (limit {self.limit}s); "
                                f"every thread's stack:\n{all_stacks()}")
                if self.on_trip is not None:
                    self.on_trip()
                return


# ----------------------------------------------------------------- what really runs


def trees() -> dict[str, dict[int, str | None]]:
    """Server id -> {pid: spawn token} of every live process of ours that procsync spawned."""
    out: dict[str, dict[int, str | None]] = collections.defaultdict(dict)
    for proc in marked_processes():
        try:
            env = proc.environ()
        except psutil.Error:
            continue
        if env.get("PROCSYNC_ID"):
            out[env["PROCSYNC_ID"]][proc.pid] = env.get("PROCSYNC_SPAWN")
    return out


def inconsistency(statuses: list[dict[str, Any]]) -> str | None:
    """What in `statuses` (ServerStatus dicts) disagrees with the process table (None: nothing)."""
    for s in statuses:
        if s["status"] not in STABLE:
            return f"{s['id']} is still {s['status']}"
    real = trees()
    for s in statuses:
        mine = real.get(s["id"], {})
        if s["running"]:
            if s["pid"] not in mine:
                return f"{s['id']} is running as pid {s['pid']}, which is no process of it: {mine}"
            if len(set(mine.values())) != 1:
                return f"{s['id']} runs as {len(set(mine.values()))} process trees: {mine}"
        elif mine:
            return f"{s['id']} is {s['status']}, yet its processes run: {mine}"
    return None


class TwiceWatcher:
    """All along the load: no server's main process ever runs twice (two spawns at once)."""

    def __init__(self, registry: dict[str, dict[str, Any]]) -> None:
        self.mains = {sid: tuple(cfg["command"]) for sid, cfg in registry.items()}
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load-twice", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            spawns: dict[str, set[str | None]] = collections.defaultdict(set)
            for p in scan().values():
                if p.sid and p.cmdline == self.mains.get(p.sid):
                    spawns[p.sid].add(p.token)
            self.seen += [f"{sid}: {len(t)} main processes at once" for sid, t in spawns.items() if len(t) > 1]

    def stop(self) -> list[str]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen


def settle(read: Callable[[], list[dict[str, Any]]], timeout: float = 60.0) -> None:
    last: list[str | None] = [None]

    def fine() -> bool:
        last[0] = inconsistency(read())
        return last[0] is None

    try:
        wait_until(fine, timeout, "a consistent final state")
    except AssertionError:
        raise AssertionError(f"no consistent final state after {timeout}s: {last[0]}") from None


def report(title: str, seconds: float, dog: Watchdog, outcomes: collections.Counter[Any]) -> None:
    print(f"{title}: {seconds:.0f}s, {dog.calls} calls, max latency {dog.max_latency:.2f}s "
          f"({dog.slowest}), seed {SEED}")
    for key, count in sorted(outcomes.items(), key=lambda kv: -kv[1]):
        print(f"  {count:7d}  {key}")


# ----------------------------------------------------------------- one orchestrator, 50 threads


ACTION_CODES = {None, "already_running", "already_stopped", "start_cancelled", "start_failed",
                "port_in_use", "start_timeout"}


@pytest.mark.timeout(int(ORCH_SECONDS) + 150)
def test_fifty_threads_on_one_orchestrator(tmp_path):
    registry = servers(crashy=True)
    ids = list(registry)
    orch = ServerOrchestrator(tmp_path / "state.json", interval=0.2, log_dir=tmp_path / "logs")
    orch.register_servers(registry)
    orch.initialize()
    done = threading.Event()
    dog = Watchdog(on_trip=done.set)
    outcomes: collections.Counter[Any] = collections.Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        rng = random.Random(SEED + n)
        deadline = time.monotonic() + ORCH_SECONDS
        while not done.is_set() and time.monotonic() < deadline:
            sid = rng.choice(ids)
            roll = rng.random()
            try:
                if roll < 0.2:
                    with dog.call("get_server_status()"):
                        orch.get_server_status()
                    key: Any = "status"
                elif roll < 0.3:
                    with dog.call(f"get_server({sid})"):
                        orch.get_server(sid)
                    key = "get_server"
                elif roll < 0.35:
                    with dog.call(f"tail_log({sid})"):
                        orch.tail_log(sid, 5)
                    key = "tail_log"
                else:
                    op = rng.choice(("start", "start", "stop", "stop", "restart", "start_nowait"))
                    with dog.call(f"{op}({sid})"):
                        if op == "start_nowait":
                            result = orch.start_server(sid, wait=False)
                        else:
                            result = getattr(orch, f"{op}_server")(sid)
                    key = (op, result.success, result.code)
                    if result.code not in ACTION_CODES or (result.success and result.code):
                        with lock:
                            errors.append(f"{op}({sid}) answered {result}")
                with lock:
                    outcomes[key] += 1
            except Exception:
                with lock:
                    errors.append(traceback.format_exc())

    threads = [threading.Thread(target=worker, args=(n,), name=f"load-{n}", daemon=True) for n in range(50)]
    began = time.monotonic()
    twice = TwiceWatcher(registry)
    try:
        dog.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=ORCH_SECONDS + STUCK + 60)
        dog.stop()
        assert dog.tripped is None, dog.tripped
        assert not [t.name for t in threads if t.is_alive()], all_stacks()
        elapsed = time.monotonic() - began
        assert not errors, f"{len(errors)} errors (seed {SEED}); the first:\n" + "\n".join(errors[:3])
        settle(lambda: [s.to_dict() for s in orch.get_server_status()])
        assert not twice.stop(), twice.seen[:5]
        report("in-process load", elapsed, dog, outcomes)
        assert sum(n for k, n in outcomes.items() if isinstance(k, tuple) and k[1]) > 20  # real work
        stopper = threading.Thread(target=orch.shutdown, kwargs={"stop_servers": True}, daemon=True)
        stopper.start()
        stopper.join(timeout=60)
        assert not stopper.is_alive(), "shutdown(stop_servers=True) hung:\n" + all_stacks()
        wait_until(lambda: not trees(), 15, "every server stopped by shutdown")
    finally:
        done.set()
        twice.stop()
        if not orch._closed:
            threading.Thread(target=orch.shutdown, kwargs={"stop_servers": True}, daemon=True).start()
        kill_marked()


# ----------------------------------------------------------------- procsync serve, 100 clients


TOKEN = "load-test-token"


def toml(value: object) -> str:
    return json.dumps(value)  # a JSON string or list of strings is a TOML basic string / array


class Serve:
    """A `procsync serve --stop-on-exit` subprocess on a free port."""

    def __init__(self, folder: Path, registry: dict[str, dict[str, Any]], token: bool) -> None:
        self.port = free_port()
        lines = ["[procsync]", f"port = {self.port}", "interval = 0.3"]
        if token:
            lines.append('auth_token = "${LOAD_TOKEN}"')
        for sid, cfg in registry.items():
            lines.append(f"[servers.{sid}]")
            lines += [f"{key} = {toml(value)}" for key, value in cfg.items()]
        self.config = folder / "procsync.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.out, self.err = folder / "serve.out", folder / "serve.err"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROCSYNC_") or k == RUN_MARKER}
        env.update(LOAD_TOKEN=TOKEN, PYTHONFAULTHANDLER="1")  # SIGABRT then dumps every thread
        env["PYTHONPATH"] = os.pathsep.join(  # procsync from this checkout, like the tests
            filter(None, [str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")]))
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen([*PROCSYNC, "serve", "-c", str(self.config), "--stop-on-exit", "-q"],
                                         stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            wait_until(lambda: "dashboard at" in self.out.read_text() or self.proc.poll() is not None,
                       30, "procsync serve to print its URL")
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited {self.proc.returncode}: {self.err.read_text()}")
            self.prefix = re.search(r"dashboard at http://[^/]+(\S*?)/?$", self.out.read_text(),
                                    re.M).group(1) + "/api"
        except BaseException:
            self.close()
            raise

    def dump_stacks(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGABRT)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def request(port: int, method: str, path: str, headers: dict[str, str], body: bytes | None = None,
            timeout: float = STUCK + 5) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None
    finally:
        conn.close()


@pytest.mark.parametrize("token", [True, False], ids=["token", "loopback"])
@pytest.mark.timeout(int(HTTP_SECONDS) + 180)
def test_hundred_http_clients_on_procsync_serve(tmp_path, token):
    registry = servers(crashy=False)  # a start that fails by itself would rightly be a 500
    ids = list(registry)
    serve = Serve(tmp_path, registry, token)
    headers = {"Authorization": f"Bearer {TOKEN}"} if token else {}
    post = {**headers, "Content-Type": "application/json"}
    done = threading.Event()
    dog = Watchdog(on_trip=lambda: (done.set(), serve.dump_stacks()))
    outcomes: collections.Counter[Any] = collections.Counter()
    errors: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(SEED + n)
        deadline = time.monotonic() + HTTP_SECONDS
        while not done.is_set() and time.monotonic() < deadline:
            sid = rng.choice(ids)
            roll = rng.random()
            if roll < 0.4:
                method, path, body = "GET", "/servers", None
            elif roll < 0.55:
                method, path, body = "GET", f"/servers/{sid}", None
            else:
                action = rng.choice(("start", "start", "stop", "stop", "restart"))
                method, path, body = "POST", f"/servers/{sid}/{action}", b"{}"
            what = f"{method} {path}"
            try:
                with dog.call(what):
                    status, answer = request(serve.port, method, serve.prefix + path,
                                             post if method == "POST" else headers, body)
            except Exception as err:
                with lock:
                    errors.append(f"{what}: {type(err).__name__}: {err}")
                continue
            ok = status == 200 or (method == "POST" and status == 409)
            with lock:
                outcomes[(method, path.rsplit("/", 1)[-1] if method == "POST" else path.count("/"),
                          status)] += 1
                if not ok:
                    errors.append(f"{what} answered {status}: {answer}")

    threads = [threading.Thread(target=client, args=(n,), name=f"client-{n}", daemon=True)
               for n in range(100)]
    began = time.monotonic()
    twice = TwiceWatcher(registry)
    try:
        dog.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=HTTP_SECONDS + STUCK + 60)
        dog.stop()
        if dog.tripped is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                serve.proc.wait(timeout=10)  # faulthandler prints every stack, then it dies
            raise AssertionError(f"{dog.tripped}\n--- procsync serve's stacks:\n{serve.err.read_text()[-20000:]}")
        assert not [t.name for t in threads if t.is_alive()], all_stacks()
        elapsed = time.monotonic() - began
        assert not errors, (f"{len(errors)} bad answers (seed {SEED}); the first: "
                            + "\n".join(errors[:5]))

        def read() -> list[dict[str, Any]]:
            status, answer = request(serve.port, "GET", serve.prefix + "/servers", headers)
            assert status == 200, answer
            return answer["servers"]

        settle(read)
        assert not twice.stop(), twice.seen[:5]
        report(f"HTTP load ({'token' if token else 'loopback, no token'})", elapsed, dog, outcomes)
        assert sum(n for (method, _, status), n in outcomes.items() if method == "POST" and status == 200) > 5
        assert serve.stop() == 0, serve.err.read_text()
        wait_until(lambda: not trees(), 15, "every server stopped when serve exits")
    finally:
        done.set()
        twice.stop()
        serve.close()
        kill_marked()
