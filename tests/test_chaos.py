"""Chaos: a seeded random sequence of operations over six real servers and a crashing host.

The orchestrator runs in its own process (chaos_host.py) so that it can be
killed with SIGKILL and replaced by a new one on the same state file, which
is sometimes truncated or otherwise damaged in between. The operations:
start, stop, restart, SIGKILL a server's main process (procsync's child),
SIGKILL a grandchild (three of the servers are a python process that runs a
shell that runs a grandchild; one grandchild listens on the server's port,
one is in a session of its own), SIGKILL the host and start a new one,
damage the state file between two hosts, and hold a server's port with an
outside listener.

After every step, once things settle: every server said to be running has
exactly one live, complete process tree of ours (one spawn token) and the
state file records it; a server not running has no process; no process of
this test run is untracked; the state file parses; no outside process
("bystander": a decoy with a server's very command line, a plain sleeper in
our own process group, the outside port holders) was signalled: each writes
any catchable signal to a file and is watched with a pidfd. A watcher thread
checks all along that no server's main process ever runs twice.

The seed is random and printed; ``PROCSYNC_CHAOS_SEED=N`` replays a run
(timing can still differ), ``PROCSYNC_CHAOS_OPS=N`` runs longer.
Besides, with weight ``PROCSYNC_CHAOS_MIDWAY`` (default 4; the others sum to
85), the host is SIGKILLed in the middle of a start, stop or restart: also
between spawning a server and recording it, which the next host must settle
from the spawn's markers (tests/test_unrecorded_spawn.py).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import random
import select
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from chaos_host import Host
from helpers import PY, RUN_MARKER, free_port, is_gone, kill_marked, listener_code, wait_until

OPS = int(os.environ.get("PROCSYNC_CHAOS_OPS") or 300)
SEED = int(os.environ.get("PROCSYNC_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
SETTLE = 30.0  # generous: two cores shared with other work
STABLE = {"running", "stopped", "crashed", "exited", "fatal"}

# catchable signals a bystander reports (SIGKILL shows through its pidfd)
WATCHED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPIPE")
NOTE_SIGNALS = (
    "import os, signal, sys, time\n"
    "LOG = os.environ.get('CHAOS_SIGNAL_LOG')\n"
    "def note(signum, frame):\n"
    "    if LOG:\n"
    "        with open(LOG, 'a') as f:\n"
    "            f.write(f'{os.getpid()} {signal.Signals(signum).name}\\n')\n"
    "    signal.signal(signum, signal.SIG_DFL)\n"
    "    os.kill(os.getpid(), signum)\n"
    f"for name in {WATCHED!r}:\n"
    "    signal.signal(getattr(signal, name), note)\n"
)
PLAIN = NOTE_SIGNALS + "while True:\n    time.sleep(60)\n"  # the "plain" server, and the decoy
HOLDER = NOTE_SIGNALS + (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "try:\n"
    "    s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(8)\n"
    "except OSError as err:\n"
    "    print('busy', err, flush=True); sys.exit(3)\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"  # held until the test closes our stdin
)


def tree_code(middle: list[str]) -> str:
    """A server whose child runs `middle` (which starts a grandchild); exits 1 when the child ends."""
    return f"import subprocess, sys\nsubprocess.Popen({middle!r}).wait()\nsys.exit(1)\n"


def registry(ports: dict[str, int]) -> dict[str, dict[str, Any]]:
    common = {"stop_timeout": 3, "start_timeout": 15}
    restarting = {"backoff_initial": 0.1, "backoff_max": 0.5, "max_restarts": 3, "stable_after": 1.0}
    grandchild_listener = f"{shlex.quote(PY)} -c {shlex.quote(listener_code(ports['treeport']))}"
    return {
        "web": {"command": [PY, "-c", listener_code(ports["web"])], "ports": [ports["web"]], **common},
        "api": {"command": [PY, "-c", listener_code(ports["api"])], "ports": [ports["api"]],
                "autorestart": "always", **restarting, **common},
        "tree": {"command": [PY, "-c", tree_code(["sh", "-c", "sleep 600 & wait $!; exit 1"])],
                 "autorestart": "on-failure", **restarting, **common},
        "treeport": {"command": [PY, "-c", tree_code(["sh", "-c", f"{grandchild_listener} & wait $!; exit 1"])],
                     "ports": [ports["treeport"]], **common},
        "detached": {"command": [PY, "-c", tree_code(["sh", "-c", "setsid -w sleep 600 & wait $!; exit 1"])],
                     "autorestart": "always", **restarting, **common},
        "plain": {"command": [PY, "-c", PLAIN], **common},
    }


IDS = ("web", "api", "tree", "treeport", "detached", "plain")
TREES = ("tree", "treeport", "detached")
SIZE = {sid: 3 if sid in TREES else 1 for sid in IDS}  # processes in one complete tree
OP_WEIGHTS = {"start": 20, "stop": 14, "restart": 10, "kill_child": 14, "kill_grandchild": 10,
              "hold_port": 5, "release_port": 5, "host_restart": 4, "host_corrupt": 3,
              "host_midway": int(os.environ.get("PROCSYNC_CHAOS_MIDWAY") or 4)}
CORRUPTIONS = ("truncate", "garbage", "empty", "not_object", "bad_entry", "forge", "stale_identity")


# ----------------------------------------------------------------- the process table


@dataclasses.dataclass(frozen=True)
class Ours:
    """A live process of this test run (it carries the run marker)."""

    pid: int
    ppid: int
    sid: str | None  # PROCSYNC_ID: spawned by procsync for that server (or a descendant)
    token: str | None  # PROCSYNC_SPAWN: which spawn
    cmdline: tuple[str, ...]


def scan() -> dict[int, Ours]:
    """Every live (non-zombie) process carrying this run's marker, but the test itself."""
    marker = f"{RUN_MARKER}={os.environ[RUN_MARKER]}".encode()
    me = os.getpid()
    found: dict[int, Ours] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = tuple(a.decode(errors="replace") for a in f.read().split(b"\0")[:-1])
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields[0] in (b"Z", b"X") or marker not in env:
            continue
        values = dict(v.split(b"=", 1) for v in env if b"=" in v)
        sid, token = values.get(b"PROCSYNC_ID"), values.get(b"PROCSYNC_SPAWN")
        found[int(name)] = Ours(int(name), int(fields[1]), sid.decode() if sid else None,
                                token.decode() if token else None, cmdline)
    return found


# ----------------------------------------------------------------- outside processes


class Bystander:
    """An outside process procsync must never signal: it logs catchable signals, a pidfd shows death."""

    def __init__(self, argv: list[str], signal_log: Path, *, own_session: bool = True) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env={**os.environ, "CHAOS_SIGNAL_LOG": str(signal_log)},
                                     start_new_session=own_session)
        self.pid = self.proc.pid
        self.pidfd = os.pidfd_open(self.pid)

    def died(self) -> bool:
        return bool(select.select([self.pidfd], [], [], 0)[0])

    def line(self, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise AssertionError(f"bystander {self.pid} said nothing within {timeout}s")
        return self.proc.stdout.readline().decode().strip()

    def release(self) -> int:
        """Let it end on its own (EOF on stdin); its exit code."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        code = self.proc.wait(timeout=10)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        if self.pidfd >= 0:
            os.close(self.pidfd)
            self.pidfd = -1


class Broken(AssertionError):
    """A violation that no amount of waiting can repair."""


# ----------------------------------------------------------------- the run


class Chaos:
    def __init__(self, tmp_path: Path, seed: int) -> None:
        self.rng = random.Random(seed)
        self.state = tmp_path / "state" / "state.json"
        self.state.parent.mkdir()
        self.logs = tmp_path / "logs"
        self.host_log = tmp_path / "host.err"
        self.signal_log = tmp_path / "signals.log"
        self.signal_log.touch()
        self.ports = {sid: free_port() for sid in ("web", "api", "treeport")}
        self.registry = registry(self.ports)
        self.tops = {sid: tuple(cfg["command"]) for sid, cfg in self.registry.items()}
        self.bystanders: list[Bystander] = []
        self.held: dict[str, Bystander] = {}  # server id -> outside listener on its port
        self.host: Host | None = None
        self.view: dict[str, dict[str, Any]] = {}  # the last settled status
        self.journal: list[str] = []
        self.lost: set[str] = set()  # ids whose records the last damage made unusable
        self.target = ""  # the server the current step acted on
        # ids whose unusable record may still be in the store (kept for the user until a start
        # replaces it): a later host may then report "crashed" instead of "stopped"
        self.stale: set[str] = set()
        self.counts: collections.Counter[str] = collections.Counter()
        self.twice: list[str] = []
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="chaos-twice", daemon=True)

    # -- set-up and tear-down

    def begin(self) -> None:
        self.decoy = Bystander([PY, "-c", PLAIN], self.signal_log)  # the "plain" server's command line
        self.bystanders.append(self.decoy)
        self.bystanders.append(Bystander([PY, "-c", PLAIN], self.signal_log, own_session=False))
        self.bystanders.append(Bystander(["sleep", "600"], self.signal_log))
        self.host = Host(self.state, self.logs, self.registry, self.host_log)
        self._watcher.start()
        self.settle("the first host")

    def finish(self) -> None:
        """The good ending: the host stops every server, nothing of ours is left."""
        assert self.host is not None
        self.host.call("quit", stop=True, timeout=60)
        self.host.close()
        self.host = None
        wait_until(lambda: not [p for p in scan().values() if p.sid], 15, "every server stopped")
        self.check_bystanders()

    def cleanup(self) -> None:
        """Always: stop the watcher, kill the host, every server and every bystander."""
        self._stop_watch.set()
        if self._watcher.is_alive():
            self._watcher.join(timeout=5)
        if self.host is not None:
            self.host.kill()
            self.host.close()
        for b in self.bystanders + list(self.held.values()):
            b.close()
        kill_marked()

    # -- looking

    def _watch(self) -> None:
        """All along, not only after each step: no server's main process ever runs twice."""
        while not self._stop_watch.wait(0.1):
            tops: dict[str, set[str | None]] = collections.defaultdict(set)
            for p in scan().values():
                if p.sid and p.cmdline == self.tops.get(p.sid):
                    tops[p.sid].add(p.token)
            for sid, tokens in tops.items():
                if len(tokens) > 1:
                    self.twice.append(f"{sid}: {len(tokens)} main processes at once "
                                      f"(op {len(self.journal)})")

    def check_bystanders(self) -> None:
        noted = self.signal_log.read_text()
        if noted:
            raise Broken(f"an outside process was signalled: {noted.strip()}")
        for b in self.bystanders + list(self.held.values()):
            if b.died():
                raise Broken(f"outside process {b.pid} ({' '.join(b.argv)[:60]}) died")
        if self.twice:
            raise Broken("a server ran twice: " + "; ".join(self.twice[:5]))

    def status(self) -> dict[str, dict[str, Any]]:
        assert self.host is not None
        if self.host.proc.poll() is not None:
            raise Broken(f"the host died (exit code {self.host.proc.returncode})")
        return self.host.call("status", timeout=60)

    def violation(self) -> str | None:
        """What is wrong right now (None: all invariants hold)."""
        self.check_bystanders()
        status = self.status()
        for sid, s in status.items():
            if s["status"] not in STABLE:
                return f"{sid} is {s['status']}"
        procs = scan()
        mine: dict[str, list[Ours]] = collections.defaultdict(list)
        for p in procs.values():
            if p.sid:
                mine[p.sid].append(p)
        for sid in IDS:
            s, tree = status[sid], mine.get(sid, [])
            if s["running"]:
                if s["pid"] in {b.pid for b in self.bystanders}:
                    raise Broken(f"{sid} is running as outside process {s['pid']}")
                if s["pid"] not in {p.pid for p in tree}:
                    return f"{sid} is running with pid {s['pid']}, which is no process of {sid}"
                tokens = {p.token for p in tree}
                if len(tokens) != 1:
                    return f"{sid} runs as {len(tokens)} process trees: {tree}"
                if len(tree) != SIZE[sid]:
                    return f"{sid}'s tree has {len(tree)} processes, not {SIZE[sid]}: {tree}"
            elif tree:
                return f"{sid} is {s['status']}, yet its processes run: {tree}"
        allowed = {b.pid for b in self.bystanders} | {b.pid for b in self.held.values()}
        assert self.host is not None
        allowed.add(self.host.pid)
        untracked = [p for p in procs.values() if not p.sid and p.pid not in allowed]
        if untracked:
            return f"untracked processes of ours: {untracked}"
        try:
            raw = self.state.read_bytes() if self.state.exists() else b""  # missing: an empty store
            saved = json.loads(raw) if raw.strip() else {}
        except (OSError, ValueError) as err:
            return f"the state file does not parse: {err}"
        if not isinstance(saved, dict):
            return f"the state file is not an object: {saved!r:.80}"
        for sid in IDS:
            s, record = status[sid], saved.get(sid)
            if s["running"] and not (record and record.get("pid") == s["pid"]
                                     and record.get("status") == "running"):
                return f"{sid} runs as pid {s['pid']} but the state file says {record}"
        for sid, holder in self.held.items():
            if status[sid]["orphaned_pid"] != holder.pid:
                return (f"{sid}'s port is held by outside pid {holder.pid}, but its status shows "
                        f"orphaned_pid {status[sid]['orphaned_pid']}")
        self.view = status
        return None

    def settle(self, after: str) -> None:
        last: list[str | None] = [None]

        def fine() -> bool:
            last[0] = self.violation()
            return last[0] is None

        try:
            wait_until(fine, SETTLE, f"things to settle after {after}")
        except Broken:
            raise
        except AssertionError:
            raise AssertionError(f"not settled {SETTLE}s after {after}: {last[0]}") from None

    # -- acting

    def step(self, n: int) -> None:
        # every draw is made whatever the state, so a seed replays the same choices
        op = self.rng.choices(list(OP_WEIGHTS), weights=list(OP_WEIGHTS.values()))[0]
        sid = self.rng.choice(IDS)
        aux = self.rng.random()
        mode = self.rng.choice(CORRUPTIONS)
        before = self.view
        self.target = sid
        done = getattr(self, "op_" + op)(sid, aux, mode, before)
        what = {"start": sid, "stop": sid, "restart": sid, "host_corrupt": mode}.get(op, "")
        self.journal.append(f"{n}: {op} {what}: {done}")
        self.counts[op if done != "skipped" else "skipped"] += 1
        self.settle(self.journal[-1])
        self.expect(op, self.target, before, done)

    def call(self, op: str, sid: str) -> dict[str, Any]:
        assert self.host is not None
        return self.host.call(op, id=sid, timeout=60)

    def op_start(self, sid: str, aux: float, mode: str, before: dict) -> str:
        return self._act("start", sid, before)

    def op_restart(self, sid: str, aux: float, mode: str, before: dict) -> str:
        return self._act("restart", sid, before)

    def op_stop(self, sid: str, aux: float, mode: str, before: dict) -> str:
        return self._act("stop", sid, before)

    def _act(self, op: str, sid: str, before: dict) -> str:
        answer = self.call(op, sid)
        running = before[sid]["running"]
        if op in ("start", "restart") and sid in self.held and not running:
            ok = not answer["success"] and answer["code"] == "port_in_use" \
                and str(self.held[sid].pid) in answer["message"]
        elif op == "start" and running:
            ok = not answer["success"] and answer["code"] == "already_running"
        elif op == "stop" and not running:
            ok = not answer["success"] and answer["code"] == "already_stopped"
        else:
            ok = answer["success"]
        if not ok:
            raise Broken(f"{op} {sid} (was {before[sid]['status']}) answered {answer}")
        if op in ("start", "restart") and answer["success"]:
            self.stale.discard(sid)
        return answer["code"] or "ok"

    def _tree(self, sid: str) -> list[Ours]:
        pid = self.view[sid]["pid"]
        procs = scan()
        token = procs[pid].token if pid in procs else None
        return sorted((p for p in procs.values() if p.sid == sid and p.token == token),
                      key=lambda p: p.pid)

    @staticmethod
    def _pick(candidates: list[str], aux: float) -> str | None:
        return candidates[int(aux * len(candidates))] if candidates else None

    def op_kill_child(self, sid: str, aux: float, mode: str, before: dict) -> str:
        target = self._pick([s for s in IDS if before[s]["running"]], aux)
        if target is None:
            return "skipped"
        self.target = target
        pid = before[target]["pid"]
        if pid not in {p.pid for p in self._tree(target)}:
            raise Broken(f"{target}'s pid {pid} is not its process")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: is_gone(pid), 10, f"killed pid {pid} gone")  # else a check may see it
        return f"killed {target}'s pid {pid}"

    def op_kill_grandchild(self, sid: str, aux: float, mode: str, before: dict) -> str:
        target = self._pick([s for s in TREES if before[s]["running"]], aux)
        if target is None:
            return "skipped"
        self.target = target
        below = [p for p in self._tree(target) if p.pid != before[target]["pid"]]
        victim = below[int(aux * 7919) % len(below)]
        os.kill(victim.pid, signal.SIGKILL)
        wait_until(lambda: is_gone(victim.pid), 10, f"killed pid {victim.pid} gone")
        return f"killed {target}'s pid {victim.pid} ({victim.cmdline[0]})"

    def op_hold_port(self, sid: str, aux: float, mode: str, before: dict) -> str:
        target = self._pick([s for s in self.ports if s not in self.held and not before[s]["running"]], aux)
        if target is None:
            return "skipped"
        holder = Bystander([PY, "-c", HOLDER, str(self.ports[target])], self.signal_log)
        said = holder.line()
        if said != "ready":
            holder.close()
            raise Broken(f"the free port {self.ports[target]} of stopped {target} could not be held: {said}")
        self.held[target] = holder
        return f"held {target}'s port {self.ports[target]} by pid {holder.pid}"

    def op_release_port(self, sid: str, aux: float, mode: str, before: dict) -> str:
        target = self._pick(sorted(self.held), aux)
        if target is None:
            return "skipped"
        holder = self.held.pop(target)
        if holder.died():
            raise Broken(f"outside port holder {holder.pid} died")
        code = holder.release()
        if code != 0 or self.signal_log.read_text():
            raise Broken(f"outside port holder {holder.pid} ended with {code}")
        return f"released {target}'s port"

    def _crash_host(self) -> None:
        assert self.host is not None
        self.host.kill()
        self.host.close()  # the pipes (it is dead already)
        self.host = None

    def _new_host(self) -> None:
        self.host = Host(self.state, self.logs, self.registry, self.host_log)

    def op_host_restart(self, sid: str, aux: float, mode: str, before: dict) -> str:
        self._crash_host()
        self._new_host()
        return "ok"

    def op_host_midway(self, sid: str, aux: float, mode: str, before: dict) -> str:
        """SIGKILL the host while it starts, stops or restarts `sid` (the answer never comes)."""
        assert self.host is not None
        op = ("start", "stop", "restart")[int(aux * 3)]
        self.host.send(op, id=sid)
        time.sleep((aux * 7919) % 1 * 0.3)  # a moment somewhere inside the action
        self._crash_host()
        self._new_host()
        return f"killed the host during {op} {sid}"

    def op_host_corrupt(self, sid: str, aux: float, mode: str, before: dict) -> str:
        self._crash_host()
        asides = len(list(self.state.parent.glob("state.json.corrupt*")))
        self.lost, damaged = corrupt(self.state, mode, aux, self.decoy.pid)
        self.stale |= self.lost
        self._new_host()
        if damaged:
            got = len(list(self.state.parent.glob("state.json.corrupt*")))
            if got <= asides:
                raise Broken(f"the damaged state file ({mode}) was not kept aside")
        self._forget(self.lost)
        return f"lost {sorted(self.lost)}"

    def _forget(self, lost: set[str]) -> None:
        """The records of `lost` are gone, but their processes carry this state file, their id
        and their spawn token: the new host must have found and adopted each running tree."""
        assert self.host is not None
        for sid in sorted(lost):
            tree = [p for p in scan().values() if p.sid == sid]
            if not tree:
                continue
            status = self.status()[sid]
            if not status["running"] or status["pid"] not in {p.pid for p in tree}:
                raise Broken(f"{sid}'s processes run, yet after its record was lost the new host "
                             f"shows {status}")
            self.counts["lost_records_recovered"] += 1

    # -- what each step must have done

    def expect(self, op: str, sid: str, before: dict, done: str) -> None:
        after = self.view
        if op == "kill_child" and done != "skipped" or op == "kill_grandchild" and done != "skipped":
            policy = self.registry[sid].get("autorestart", "no")
            if policy == "no" and after[sid]["status"] != "crashed":
                raise Broken(f"{sid} (autorestart no) is {after[sid]['status']} after {done}")
            if policy != "no" and after[sid]["status"] not in ("running", "fatal"):
                raise Broken(f"{sid} (autorestart {policy}) is {after[sid]['status']} after {done}")
            if after[sid]["pid"] == before[sid]["pid"]:
                raise Broken(f"{sid} still shows pid {before[sid]['pid']} after {done}")
        if op in ("host_restart", "host_corrupt"):  # (host_midway: any outcome, if consistent)
            for other in IDS:
                was, now = before[other], after[other]
                if other in self.stale and not was["running"] and not now["running"]:
                    continue
                if (was["status"], was["pid"]) != (now["status"], now["pid"]):
                    raise Broken(f"{other} was {was['status']} (pid {was['pid']}) before the host "
                                 f"was replaced, and is {now['status']} (pid {now['pid']}) after")
        if op in ("start", "restart") and done == "ok" and not after[sid]["running"]:
            raise Broken(f"{sid} is {after[sid]['status']} right after a successful {op}")
        if op == "stop" and done == "ok" and after[sid]["status"] != "stopped":
            raise Broken(f"{sid} is {after[sid]['status']} right after a successful stop")


def _entry_span(raw: bytes, key: str) -> tuple[int, int] | None:
    """(start, end) of `key`'s value on its own line in the state file, or None."""
    at = raw.find(b"\n  " + json.dumps(key).encode() + b": ")
    if at < 0:
        return None
    start = raw.index(b"{", at)
    end = raw.find(b"\n", start)
    end = len(raw) if end < 0 else end
    if raw[end - 1:end] == b",":
        end -= 1
    return start, end


def corrupt(path: Path, mode: str, aux: float, decoy: int) -> tuple[set[str], bool]:
    """Damage the state file as `mode` says: the ids whose records it made unusable, and
    whether the file is now bad (so the store must keep a copy aside)."""
    raw = path.read_bytes() if path.exists() else b""
    doc = json.loads(raw) if raw.strip() else {}
    keys = list(doc)
    k = int(aux * len(keys)) if keys else 0
    if mode in ("truncate", "garbage") and keys:
        span = _entry_span(raw, keys[k])
        if span is not None:
            start, end = span
            cut = start + 1 + int(aux * 7919) % max(1, end - start - 2)  # strictly inside the value
            path.write_bytes(raw[:cut] if mode == "truncate" else raw[:start] + b"\xff\x00#" + raw[cut:])
            return set(keys[k:]), True
        mode = "not_object"
    if mode == "empty":
        path.write_bytes(b"")
        return set(keys), False
    if mode in ("not_object", "truncate", "garbage"):
        path.write_bytes(b'["not", "an object"]\n')
        return set(keys), True
    if mode == "bad_entry" and keys:
        doc[keys[k]] = {**doc[keys[k]], "pid": "not a pid"}
        path.write_text(json.dumps(doc))
        return {keys[k]}, True
    if mode == "forge":  # "plain" now names the decoy, which has its very command line, without proof
        doc["plain"] = {"id": "plain", "pid": decoy, "command": shlex.join([PY, "-c", PLAIN]),
                        "cwd": None, "startTime": "2025-01-01T00:00:00.000Z", "status": "running",
                        "ports": []}
        path.write_text(json.dumps(doc))
        return {"plain"}, False
    if mode == "stale_identity" and keys:
        record = doc[keys[k]]
        if isinstance(record.get("createTime"), int | float):
            record["createTime"] += 1000.0  # the pid now proves nothing
        path.write_text(json.dumps(doc))
        return {keys[k]}, False
    return set(), False


@pytest.mark.timeout(max(120, int(OPS * 0.9) + 60))
def test_chaos(tmp_path):
    print(f"chaos: seed {SEED}, {OPS} operations (replay: PROCSYNC_CHAOS_SEED={SEED})")
    chaos = Chaos(tmp_path, SEED)
    began = time.monotonic()
    n = -1
    try:
        chaos.begin()
        for n in range(OPS):
            chaos.step(n)
        chaos.finish()
    except BaseException as err:
        tail = "\n  ".join(chaos.journal[-25:])
        try:
            host_log = chaos.host_log.read_text()[-3000:]
        except OSError:
            host_log = ""
        raise AssertionError(
            f"chaos failed at operation {n} of {OPS}, seed {SEED} "
            f"(replay: PROCSYNC_CHAOS_SEED={SEED} PROCSYNC_CHAOS_OPS={OPS}): {err}\n"
            f"last operations:\n  {tail}\nhost stderr (tail):\n{host_log}") from err
    finally:
        chaos.cleanup()
    elapsed = time.monotonic() - began
    if os.environ.get("PROCSYNC_CHAOS_VERBOSE"):
        print("\n".join(chaos.journal))
    print(f"chaos: {OPS} operations survived in {elapsed:.1f}s, seed {SEED}: {dict(chaos.counts)}")
    assert chaos.counts["host_restart"] + chaos.counts["host_corrupt"] >= 1 or OPS < 50
    assert sum(chaos.counts[op] for op in ("start", "restart", "kill_child")) > OPS // 5
