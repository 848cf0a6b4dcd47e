"""The process table: one scan for many owners, tokens matched to the right owner, parent links."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
from helpers import PY, wait_until

from procsync.proctree import TOKEN_VAR, Owner, ParentLinks, find_trees

SLEEP = [PY, "-c", "import time; time.sleep(60)"]
ESCAPER = (  # a leader whose grandchild leaves its session; the leader then waits
    "import subprocess, sys, time\n"
    "code = 'import os, time, pathlib, sys; os.setsid(); "
    "pathlib.Path(sys.argv[1]).write_text(str(os.getpid())); time.sleep(60)'\n"
    "subprocess.Popen([sys.executable, '-c', code, sys.argv[1]])\n"
    "time.sleep(60)\n"
)


def start(command: list[str], token: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, env={**os.environ, TOKEN_VAR: token}, start_new_session=True)


def owner(proc: subprocess.Popen[bytes], key: str, token: str | None, **kw) -> Owner:
    return Owner(key, proc.pid, proc.pid, psutil.Process(proc.pid).create_time(), token, **kw)


def test_one_scan_finds_each_owners_tree_and_token_carriers_only_for_their_owner(tmp_path: Path):
    procs = [start([PY, "-c", ESCAPER, str(tmp_path / "a")], "tok-a"),
             start(SLEEP, "tok-b"), start(SLEEP, "tok-other")]
    try:
        escapee = int(wait_until(lambda: (tmp_path / "a").exists() and (tmp_path / "a").read_text(),
                                 what="escapee pid"))
        owners = [owner(procs[0], "a", "tok-a", session=True), owner(procs[1], "b", "tok-b")]
        trees = {k: {p.pid for p in v} for k, v in find_trees(owners).items()}
        assert procs[0].pid in trees["a"] and escapee in trees["a"]
        assert trees["b"] == {procs[1].pid}
        assert procs[2].pid not in trees["a"] | trees["b"]
        # without tokens the escapee (own session, own group) is not provably a's
        no_token = find_trees([owner(procs[0], "a", "tok-a", session=True, descendants=False,
                                     tokens=False)])["a"]
        assert escapee not in {p.pid for p in no_token}
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        if (tmp_path / "a").exists():
            try:
                os.kill(int((tmp_path / "a").read_text()), 9)
            except ProcessLookupError:
                pass


def test_a_recorded_create_time_that_differs_claims_nothing():
    proc = start(SLEEP, "tok-r")
    try:
        stale = Owner("r", proc.pid, proc.pid, psutil.Process(proc.pid).create_time() - 50, "tok-x")
        assert find_trees([stale]) == {"r": []}
    finally:
        proc.kill()
        proc.wait()


def test_parent_links_follow_new_processes_and_reparenting():
    links = ParentLinks(refresh_every=1000)
    links.children()
    proc = subprocess.Popen([PY, "-c", "import subprocess, sys, time\n"
                             "p = subprocess.Popen(['sleep', '60']); print(p.pid, flush=True)\n"
                             "time.sleep(60)"], stdout=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        grandchild = int(proc.stdout.readline())
        assert proc.pid in links.children()[os.getpid()]
        assert grandchild in links.children()[proc.pid]
        proc.kill()
        proc.wait()
        wait_until(lambda: grandchild not in links.children().get(proc.pid, []), what="reparenting")
        parent = psutil.Process(grandchild).ppid()
        assert grandchild in links.children()[parent]
    finally:
        try:
            os.killpg(proc.pid, 9)  # the leader and the grandchild (same group)
        except ProcessLookupError:
            pass
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
