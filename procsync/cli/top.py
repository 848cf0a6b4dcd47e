"""`procsync top` (and `procsync status --watch`): the servers' figures as a live table.

For someone on the server over ssh: every `interval` seconds one ``GET
/api/servers``, drawn in place in the terminal's alternate screen, with a
sparkline of each server's CPU and memory. The sparklines are seeded once
per server from ``GET /api/servers/<id>/metrics`` (the monitor's resource
history) and then grow by one sample per refresh, kept here.

When stdout is not a terminal, each refresh prints a plain frame (no escape
codes) followed by a blank line, so the output can be piped or logged.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import click

from .client import ApiClient, AuthError, ClientError, server_path
from .common import (
    config_option,
    fmt_uptime,
    make_client,
    server_cells,
    table,
    url_option,
)

SPARK = "▁▂▃▄▅▆▇█"
ASCII_SPARK = "_.-:=+*#"  # for a stdout that cannot encode SPARK
HISTORY = 60  # samples kept per server: the widest sparkline
PIPED_SPARK_WIDTH = 20  # sparkline width when stdout is not a terminal
MIN_SPARK_WIDTH = 8

ENTER = "\x1b[?1049h\x1b[?25l"  # alternate screen, hide the cursor
LEAVE = "\x1b[?25h\x1b[?1049l"  # show the cursor, back to the normal screen
HOME = "\x1b[H"
ERASE_LINE = "\x1b[2K"
ERASE_BELOW = "\x1b[J"
RESET = "\x1b[0m"
_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


# -- drawing -------------------------------------------------------------------------------

def sparkline(values: Sequence[float | None], width: int, ceiling: float, chars: str = SPARK,
              floor: float = 0.0) -> str:
    """The last `width` values as bars from `floor` to `ceiling`, right-aligned; None (not running)
    is a gap."""
    shown = list(values)[-width:] if width > 0 else []
    steps = len(chars)
    out = []
    for value in shown:
        if value is None:
            out.append(" ")
        elif ceiling <= floor:
            out.append(chars[-1] if value > 0 else chars[0])
        else:
            out.append(chars[max(0, min(steps - 1, int((value - floor) / (ceiling - floor) * steps)))])
    return "".join(out).rjust(width)


def resample(times: Sequence[float], values: Sequence[float | None], step: float, count: int,
             ) -> list[float | None]:
    """`values` as one value per `step` seconds, the newest last, at most `count` of them.

    Slot k covers (end - (k+1)·step, end - k·step] where end is the newest time; it holds
    the peak of its samples, or the last value before it when it has none. So a history
    taken at the monitor's interval lines up with the samples added at each refresh.
    """
    out: list[float | None] = []
    i = len(times) - 1
    if i < 0 or step <= 0:
        return out
    end = times[i]
    for k in range(count):
        if i < 0:
            break
        low = end - (k + 1) * step
        peak = values[i]  # invariant: times[i] <= this slot's upper end
        while i >= 0 and times[i] > low:
            value = values[i]
            if value is not None and (peak is None or value > peak):
                peak = value
            i -= 1
        out.append(peak)
    out.reverse()
    return out


def cpu_ceiling(values: Sequence[float | None]) -> float:
    """CPU bars go from 0 to 100 % (one core), or to the peak when it is higher."""
    return max([100.0, *(v for v in values if v is not None)])


def memory_scale(values: Sequence[float | None]) -> tuple[float, float]:
    """(ceiling, floor) of memory bars: the peak, and 90 % of it or the lowest value if lower.

    From 0, a few MB of growth on a big process would not move the bars; from the
    lowest value, a few KB of noise would fill them. This shows a 1 % growth as about
    one step of eight, and a steady size as a flat line.
    """
    seen = [v for v in values if v is not None]
    if not seen:
        return 0.0, 0.0
    peak = max(seen)
    return peak, min(min(seen), 0.9 * peak)


def clip(line: str, width: int) -> str:
    """`line` cut to `width` visible characters (escape codes do not count); never wraps."""
    out, seen, pos, styled = [], 0, 0, False
    while pos < len(line):
        match = _ESCAPE.match(line, pos)
        if match:
            out.append(match.group())
            styled = True
            pos = match.end()
            continue
        if seen >= width:
            return "".join(out) + (RESET if styled else "")
        out.append(line[pos])
        seen += 1
        pos += 1
    return "".join(out)


def spark_chars(stream: TextIO) -> str:
    """SPARK if `stream` can encode it, else ASCII_SPARK."""
    try:
        SPARK.encode(getattr(stream, "encoding", None) or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return ASCII_SPARK
    return SPARK


def screen(lines: list[str], width: int, height: int) -> str:
    """A frame drawn in place: cursor home, each line cleared and clipped, the rest erased."""
    height = max(1, height)
    if len(lines) > height:
        lines = [*lines[:height - 1], f"... {len(lines) - height + 1} more lines (resize, or give ids)"]
    body = "\r\n".join(ERASE_LINE + clip(line, width) for line in lines)
    tail = "\r\n" + ERASE_BELOW if len(lines) < height else ""
    return HOME + body + tail


# -- the view ------------------------------------------------------------------------------

class Trend:
    """One server's recent CPU % and RSS, one sample per refresh (None: not running)."""

    def __init__(self) -> None:
        self.cpu: deque[float | None] = deque(maxlen=HISTORY)
        self.memory: deque[float | None] = deque(maxlen=HISTORY)

    def seed(self, history: dict[str, Any], step: float) -> None:
        """Fill from a ResourceHistory JSON (the monitor's samples), resampled to `step` seconds."""
        times = [float(t) for t in history.get("times") or []]
        pids = list(history.get("pids") or [])
        running = [i >= len(pids) or pids[i] is not None for i in range(len(times))]

        def column(name: str) -> list[float | None]:
            raw = list(history.get(name) or [])
            return [float(raw[i]) if i < len(raw) and running[i] and raw[i] is not None else None
                    for i in range(len(times))]

        self.cpu.extend(resample(times, column("cpu_percent"), step, HISTORY))
        self.memory.extend(resample(times, column("memory_rss"), step, HISTORY))

    def add(self, server: dict[str, Any]) -> None:
        running = bool(server.get("running"))
        self.cpu.append(float(server.get("cpu_percent") or 0) if running else None)
        self.memory.append(float(server.get("memory_rss") or 0) if running else None)


class TopView:
    """What `procsync top` shows: the last answer of GET /servers and each server's Trend."""

    def __init__(self, client: ApiClient, interval: float, ids: Sequence[str] = (),
                 chars: str = SPARK) -> None:
        self.client, self.interval, self.ids, self.chars = client, interval, tuple(ids), chars
        self.servers: list[dict[str, Any]] = []
        self.unknown: list[str] = []
        self.trends: dict[str, Trend] = {}
        self.error: str | None = None
        self.updated: float | None = None  # time.time() of the last answer

    def refresh(self) -> None:
        """One GET /servers; seeds the Trend of each server seen for the first time.

        A ClientError is kept in `error` (shown in the frame) and raised.
        """
        try:
            answer = self.client.get("/servers").get("servers", [])
        except ClientError as err:
            self.error = str(err)
            raise
        servers = [s for s in answer if isinstance(s, dict)]
        present = {str(s.get("id")) for s in servers}
        if self.ids:
            self.unknown = [i for i in self.ids if i not in present]
            servers = [s for s in servers if s.get("id") in self.ids]
        for gone in set(self.trends) - present:
            del self.trends[gone]  # removed: a server of the same id later is seeded again
        new = [str(s.get("id")) for s in servers if str(s.get("id")) not in self.trends]
        for server_id, history in zip(new, self._histories(new), strict=True):
            trend = self.trends[server_id] = Trend()
            trend.seed(history, self.interval)
        for s in servers:
            self.trends[str(s.get("id"))].add(s)
        self.servers, self.error, self.updated = servers, None, time.time()

    def _histories(self, ids: list[str]) -> list[dict[str, Any]]:
        """The metrics JSON of each id (an empty dict where it failed), a few requests at a time."""

        def one(server_id: str) -> dict[str, Any]:
            try:
                data = self.client.get(server_path(server_id, "/metrics"))
            except ClientError:
                return {}  # no history (an older procsync, or the server just went): start empty
            return data if isinstance(data, dict) else {}

        if not ids:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(ids))) as pool:
            return list(pool.map(one, ids))

    def lines(self, width: int | None = None, color: bool = False) -> list[str]:
        """The frame as lines: a title, the table (or the error), notes; none blank (piped frames are
        separated by a blank line). `width` (a terminal's) sizes the sparklines."""
        counts = Counter(str(s.get("status")) for s in self.servers)
        summary = ", ".join(f"{n} {state}" for state, n in counts.most_common())
        when = time.strftime("%H:%M:%S", time.localtime(self.updated)) if self.updated else "never"
        title = (f"procsync top  {self.client.base_url}  every {self.interval:g}s  "
                 f"updated {when}  {summary or 'no servers'}")
        out = [title]
        if self.error is not None:
            out += [*f"error: {self.error}".splitlines(), f"retrying every {self.interval:g}s (Ctrl-C quits)"]
            return out
        if self.servers:
            out += self._table(width, color).splitlines()
        out += [f"no server {server_id!r}" for server_id in self.unknown]
        return out

    def _table(self, width: int | None, color: bool) -> str:
        headers = ["ID", "STATUS", "HEALTH", "PID", "UPTIME", "RESTARTS", "CPU", "MEM"]
        cells = [server_cells(s) for s in self.servers]
        rows = [[c[h][0] for h in headers] for c in cells]
        colors = [[c[h][1] for h in headers] for c in cells]
        spark = PIPED_SPARK_WIDTH
        if width is not None:  # share what the figures leave between the two sparklines
            used = max(len(line) for line in table(headers, rows).splitlines())
            spark = max(MIN_SPARK_WIDTH, min(HISTORY, (width - used - 4) // 2))
        span = fmt_uptime(spark * self.interval)
        headers += [f"CPU {span}", f"MEM {span}"]
        for row, color_row, s in zip(rows, colors, self.servers, strict=True):
            trend = self.trends[str(s.get("id"))]
            mem_ceiling, mem_floor = memory_scale(trend.memory)
            row += [sparkline(trend.cpu, spark, cpu_ceiling(trend.cpu), self.chars),
                    sparkline(trend.memory, spark, mem_ceiling, self.chars, floor=mem_floor)]
            color_row += [None, None]
        return table(headers, rows, colors if color else None)


# -- the loop ------------------------------------------------------------------------------

def run_top(client: ApiClient, *, interval: float = 2.0, ids: Sequence[str] = (), once: bool = False,
            stream: TextIO | None = None) -> None:
    """Draw the view every `interval` s until Ctrl-C (returns normally then).

    On a terminal: in the alternate screen, redrawn in place, fit to its width,
    restored on the way out. Otherwise: plain frames separated by a blank line.
    An unreachable server is shown in the frame and retried; a refused token
    (AuthError) is raised, as it will not get better by waiting. `once`: draw
    one frame (without the alternate screen) and return; a ClientError is raised.
    """
    out = stream if stream is not None else sys.stdout
    live = out.isatty()
    view = TopView(client, interval, ids, chars=spark_chars(out))
    if once:
        view.refresh()
        size = shutil.get_terminal_size()
        lines = view.lines(size.columns if live else None, color=live)
        out.write("\n".join(clip(line, size.columns) if live else line for line in lines) + "\n")
        out.flush()
        return
    entered = False
    try:
        if live:
            out.write(ENTER)
            entered = True
        frames = 0
        while True:
            began = time.monotonic()
            try:
                view.refresh()
            except AuthError:
                raise
            except ClientError:
                pass  # kept in view.error, drawn below; tried again next time
            if live:
                size = shutil.get_terminal_size()
                lines = view.lines(size.columns, color=True)
                lines.insert(1, "")  # a blank line under the title, on screen only
                out.write(screen(lines, size.columns, size.lines))
            else:
                out.write(("\n" if frames else "") + "\n".join(view.lines()) + "\n")
            out.flush()
            frames += 1
            time.sleep(max(0.0, interval - (time.monotonic() - began)))
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `procsync top | head`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, out.fileno())  # so that the interpreter's last flush does not fail
        os.close(devnull)
    finally:
        if entered:
            try:
                out.write(LEAVE)
                out.flush()
            except OSError:
                pass


@click.command()
@config_option
@url_option
@click.option("-n", "--interval", default=2.0, show_default=True, type=click.FloatRange(min=0.1),
              metavar="SECONDS",
              help="Seconds between refreshes.")
@click.option("--once", is_flag=True, help="Print one frame and exit.")
@click.argument("ids", nargs=-1, metavar="[ID]...")
def top(config: str, url: str | None, interval: float, once: bool, ids: tuple[str, ...]) -> None:
    """Show the servers as a live table, refreshed in place.

    State, health, pid, uptime, restarts, CPU and memory, with a sparkline of
    CPU and memory over the last refreshes. Only the IDs given, if any.
    Ctrl-C quits. Piped, prints a plain frame per refresh. Same as status --watch.
    """
    run_top(make_client(config, url), interval=interval, ids=ids, once=once)


__all__ = ["TopView", "Trend", "clip", "cpu_ceiling", "memory_scale", "resample", "run_top", "screen",
           "sparkline", "top"]
