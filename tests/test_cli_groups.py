"""Issue 13 through the real `procsync` executable: --group, reload ID, skipped servers, check.

One `procsync serve` per test, driven by the client commands as a user would:
group start / restart / stop (one line per server, exit 1 if any failed), the
usage error when IDs and --group are both given, `procsync reload ID` against a
child that counts its SIGHUPs, and `procsync check` on dependencies and cycles.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import free_port, hup_counter_code, hups, is_gone, listener_code, wait_until
from test_cli import (
    SLEEPER,
    TICKER,
    on_a_terminal,
    run,
    serve_factory,
    server_table,
    status_json,
    wait_status,
    write_config,
)

__all__ = ["serve_factory"]  # the fixture, imported from test_cli

FAILING_JOB = "import sys\nprint('migrating... no database', flush=True)\nsys.exit(3)\n"


def lines_by_id(text: str) -> dict[str, str]:
    """`id: message` lines -> {id: message}, in order."""
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line and not line.startswith(" "))


def config_with_groups(tmp_path: Path) -> tuple[Path, Path]:
    web_port = free_port()
    count = tmp_path / "hups.txt"
    servers = (
        server_table("web", listener_code(web_port), ports=(web_port,), autostart=False,
                     extra='group = "app"')
        + server_table("worker", TICKER, autostart=False,
                       extra='group = "app"\ndepends_on = ["web"]')
        + server_table("hup", hup_counter_code(count), extra='reload_signal = "SIGHUP"')
        + server_table("plain", SLEEPER, autostart=False)
        + server_table("migrate", FAILING_JOB, autostart=False,
                       extra='kind = "job"\ngroup = "bad"')
        + server_table("api", SLEEPER, autostart=False,
                       extra='group = "bad"\ndepends_on = {migrate = "completed_successfully"}')
    )
    return write_config(tmp_path, free_port(), servers), count


def test_group_commands_one_line_per_server_and_exit_codes(tmp_path, serve_factory):
    config, _ = config_with_groups(tmp_path)
    serve_factory(config)
    cfg = ("-c", str(config))

    result = run("start", "--group", "app", *cfg)
    assert result.returncode == 0, result.stderr + result.stdout
    assert list(lines_by_id(result.stdout)) == ["web", "worker"]  # dependency order
    servers = status_json(config)
    pids = {sid: servers[sid]["pid"] for sid in ("web", "worker")}
    assert servers["web"]["running"] and servers["worker"]["running"]
    assert not servers["plain"]["running"]

    # the table gains a GROUP column once a server has a group
    table = run("status", *cfg)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:3] == ["ID", "GROUP", "STATUS"]
    by_id = {row.split()[0]: row.split() for row in rows}
    assert by_id["web"][1:3] == ["app", "running"] and by_id["plain"][1:3] == ["-", "stopped"]

    again = run("start", "--group", "app", *cfg)  # already running: done, as for IDs
    assert again.returncode == 0, again.stderr + again.stdout
    assert set(lines_by_id(again.stdout)) == {"web", "worker"}

    restarted = run("restart", "-g", "app", *cfg)
    assert restarted.returncode == 0, restarted.stderr + restarted.stdout
    servers = status_json(config)
    for sid, pid in pids.items():
        assert servers[sid]["running"] and servers[sid]["pid"] != pid and is_gone(pid)
    pids = {sid: servers[sid]["pid"] for sid in ("web", "worker")}

    stopped = run("stop", "--group", "app", *cfg)
    assert stopped.returncode == 0, stopped.stderr + stopped.stdout
    assert set(lines_by_id(stopped.stdout)) == {"web", "worker"}
    for sid, pid in pids.items():
        wait_until(lambda pid=pid: is_gone(pid), 10, f"{sid} to be gone")
        assert status_json(config)[sid]["status"] == "stopped"

    unknown = run("start", "--group", "nope", *cfg)
    assert unknown.returncode == 1
    assert "unknown group 'nope'" in unknown.stderr

    # a failing job: its dependent is skipped, the command says so and exits 1
    failed = run("start", "--group", "bad", *cfg)
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "api: " in failed.stderr and "migrate" in lines_by_id(failed.stderr)["api"]
    api = wait_status(config, "api", "skipped")
    assert "migrate" in api["message"]
    assert status_json(config)["migrate"]["status"] == "crashed"
    colored = on_a_terminal("status", *cfg)
    assert "\x1b[35mskipped" in colored  # magenta: see its note
    assert not status_json(config)["api"]["running"]


def test_ids_and_group_together_are_a_usage_error(tmp_path):
    config = write_config(tmp_path, free_port(), server_table("a", SLEEPER, extra='group = "g"'))
    for args in (["start", "a", "--group", "g"], ["stop", "--all", "--group", "g"],
                 ["restart", "a", "-g", "g"]):
        result = run(*args, "-c", str(config))
        assert result.returncode == 2, (args, result.stderr)
        assert "not more than one of them" in result.stderr
    result = run("start", "-c", str(config))
    assert result.returncode == 2 and "--group NAME" in result.stderr
    assert "--group NAME" in run("start", "--help").stdout


def test_reload_id_sends_one_sighup_and_keeps_the_pid(tmp_path, serve_factory):
    config, count = config_with_groups(tmp_path)
    serve_factory(config)
    cfg = ("-c", str(config))
    hup = wait_status(config, "hup", "running")
    wait_until(lambda: "handler installed" in run("logs", "hup", *cfg).stdout, 15,
               "the SIGHUP handler to be installed")

    result = run("reload", "hup", *cfg)
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.startswith("hup: ") and "SIGHUP" in result.stdout
    wait_until(lambda: hups(count) == [str(hup["pid"])], 10, "one SIGHUP to be counted")
    again = run("reload", "hup", *cfg)
    assert again.returncode == 0, again.stderr
    wait_until(lambda: len(hups(count)) >= 2, 10, "the second SIGHUP")
    assert hups(count) == [str(hup["pid"])] * 2  # one per reload
    now = status_json(config)["hup"]
    assert now["running"] and now["pid"] == hup["pid"] and now["restarts"] == 0
    history = run("history", "hup", *cfg)
    assert "reloaded" in history.stdout

    plain = run("start", "plain", *cfg)
    assert plain.returncode == 0, plain.stderr
    refused = run("reload", "plain", "hup", *cfg)  # one refused, one done: exit 1, both reported
    assert refused.returncode == 1
    assert "plain: " in refused.stderr and "reload_signal" in refused.stderr
    assert "hup: " in refused.stdout
    wait_until(lambda: len(hups(count)) == 3, 10, "the third SIGHUP")
    assert run("reload", "nope", *cfg).returncode == 1

    # without an ID, reload still re-reads the config
    whole = run("reload", *cfg)
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout.strip() == "no changes"


def test_check_shows_groups_dependencies_and_refuses_a_cycle(tmp_path):
    config, _ = config_with_groups(tmp_path)
    result = run("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    blocks = {m.group(1): block for block in result.stdout.split("\n\n")
              if (m := re.match(r"\[(\w+)\]", block))}
    assert re.search(r"^  group +app$", blocks["worker"], re.M)
    assert re.search(r"^  depends_on +web \(started\)$", blocks["worker"], re.M)
    assert re.search(r"^  depends_on +migrate \(completed_successfully\)$", blocks["api"], re.M)
    assert re.search(r"^  kind +job", blocks["migrate"], re.M)
    assert re.search(r"^  reload +sends SIGHUP$", blocks["hup"], re.M)
    assert not re.search(r"^  (group|depends_on|kind|reload) ", blocks["plain"], re.M)

    cycle = write_config(tmp_path, free_port(), (
        server_table("a", SLEEPER, extra='depends_on = ["b"]')
        + server_table("b", SLEEPER, extra='depends_on = {a = "healthy"}')
    ), name="cycle.toml")
    result = run("check", "-c", str(cycle))
    assert result.returncode == 2, result.stdout
    assert result.stdout == ""
    assert re.search(r"depends_on: .*(a -> b -> a|b -> a -> b)$", result.stderr.strip()), result.stderr
    unknown = write_config(tmp_path, free_port(), server_table("a", SLEEPER, extra='depends_on = ["ghost"]'),
                           name="unknown.toml")
    result = run("check", "-c", str(unknown))
    assert result.returncode == 2 and "ghost" in result.stderr, result.stderr
