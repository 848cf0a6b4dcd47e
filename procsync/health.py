"""Health probes: TCP ports, HTTP GETs and check commands.

Plain functions with no state, shared by the monitor's ticks and by the
orchestrator's readiness wait. TCP probes are non-blocking connects
watched by one selector, so a thousand ports cost one thread and about one
timeout however many of them hang; a refused port answers at once.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import resource
import selectors
import shlex
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO
from urllib.parse import urlsplit

from .config import HealthCheck, child_environ

DEFAULT_HOST = "127.0.0.1"
STOP_SLICE = 0.05  # seconds between looks at `should_stop` while probes are pending
_IN_PROGRESS = {errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, errno.EALREADY}

#: (host, port, timeout) for one TCP probe.
Target = tuple[str, int, float]


def _max_in_flight() -> int:
    """How many connects to keep open at once: half the free descriptors, at most 1024."""
    try:
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY:
        return 1024
    return max(16, min(1024, soft // 2))


def _check_port(port: object) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port: {port!r} is not a port number (1..65535)")
    return port


def _check_timeout(timeout: object, name: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"{name}: must be a number of seconds greater than 0, not {timeout!r}")
    return float(timeout)


def _address(host: str, port: int) -> tuple[int, tuple]:
    """Socket family and address for `host`; names are resolved (once per probe)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        return family, sockaddr
    if ip.version == 6:
        return socket.AF_INET6, (host, port, 0, 0)
    return socket.AF_INET, (host, port)


def probe_tcp(
    targets: Sequence[Target], should_stop: Callable[[], bool] | None = None
) -> list[str | None]:
    """Try a TCP connect to every target at once; one result per target, in order.

    A result is None when the connect succeeded, else a short reason
    ("refused", "timed out after 1s", ...). Each target gets its own
    timeout from the moment its connect starts. `should_stop` is polled
    every 50 ms; once it returns True the pending targets give "aborted".
    """
    results: list[str | None] = ["not tried"] * len(targets)
    pending = list(range(len(targets)))
    pending.reverse()  # pop() from the end takes them in order
    limit = _max_in_flight()
    resolved: dict[str, tuple[int, tuple] | str] = {}
    sel = selectors.DefaultSelector()
    in_flight: dict[int, float] = {}  # index -> deadline
    socks: dict[int, socket.socket] = {}
    try:
        while pending or in_flight:
            while pending and len(in_flight) < limit:
                index = pending.pop()
                host, port, timeout = targets[index]
                outcome = _start_connect(host, port, resolved)
                if isinstance(outcome, socket.socket):
                    sel.register(outcome, selectors.EVENT_WRITE, index)
                    socks[index] = outcome
                    in_flight[index] = time.monotonic() + timeout
                else:
                    results[index] = outcome
            if not in_flight:
                continue
            if should_stop is not None and should_stop():
                break
            now = time.monotonic()
            wait = max(0.0, min(in_flight.values()) - now)
            if should_stop is not None:
                wait = min(wait, STOP_SLICE)
            for key, _events in sel.select(wait):
                index = key.data
                sock = socks.pop(index)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                results[index] = None if err == 0 else _reason(err)
                del in_flight[index]
                sel.unregister(sock)
                sock.close()
            now = time.monotonic()
            for index, deadline in list(in_flight.items()):
                if deadline <= now:
                    results[index] = f"timed out after {targets[index][2]:g}s"
                    del in_flight[index]
                    sock = socks.pop(index)
                    sel.unregister(sock)
                    sock.close()
        for index in in_flight:
            results[index] = "aborted"
        for index in pending:
            results[index] = "aborted"
    finally:
        for sock in socks.values():
            sock.close()
        sel.close()
    return results


def _reason(err: int) -> str:
    if err == errno.ECONNREFUSED:
        return "refused"
    return os.strerror(err).lower()


def _start_connect(
    host: str, port: int, resolved: dict[str, tuple[int, tuple] | str]
) -> socket.socket | str | None:
    """Start one non-blocking connect: the pending socket, None (connected) or a reason."""
    if host not in resolved:
        try:
            resolved[host] = _address(host, port)
        except OSError as err:
            resolved[host] = f"cannot resolve {host!r}: {err}"
    found = resolved[host]
    if isinstance(found, str):
        return found
    family, sockaddr = found
    sockaddr = (sockaddr[0], port, *sockaddr[2:])
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        return f"cannot open a socket: {exc.strerror or exc}"
    try:
        sock.setblocking(False)
        code = sock.connect_ex(sockaddr)
    except OSError as exc:
        sock.close()
        return exc.strerror or str(exc)
    if code == 0:
        sock.close()
        return None
    if code in _IN_PROGRESS:
        return sock
    sock.close()
    return _reason(code)


def port_open(port: int, host: str = DEFAULT_HOST, timeout: float = 1.0) -> bool:
    """True when a TCP connect to `host`:`port` succeeds within `timeout` seconds."""
    _check_port(port)
    _check_timeout(timeout)
    return probe_tcp([(host, port, float(timeout))])[0] is None


def check_ports(
    ports: Iterable[int], timeout: float = 1.0, host: str = DEFAULT_HOST
) -> dict[int, bool]:
    """{port: accepts a TCP connect}, all ports probed at once within about `timeout`."""
    checked = [_check_port(p) for p in ports]
    _check_timeout(timeout)
    unique = list(dict.fromkeys(checked))
    results = probe_tcp([(host, p, float(timeout)) for p in unique])
    return {port: result is None for port, result in zip(unique, results, strict=True)}


def check_http(
    url: str, timeout: float = 1.0, expect_status: int | None = None
) -> tuple[bool, str | None]:
    """GET `url` without following redirects; healthy on 2xx/3xx or on `expect_status`.

    HTTPS certificates are not verified: the check asks whether the server
    answers, the way container health probes do.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url: {url!r} is not an http(s) URL")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    import http.client  # here, not at import: http.client and ssl cost ~5 MiB of every host

    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        import ssl

        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=context
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "procsync-health", "Connection": "close"})
        status = conn.getresponse().status
    except TimeoutError:
        return False, f"GET {url}: timed out after {timeout:g}s"
    except ConnectionRefusedError:
        return False, f"GET {url}: connection refused"
    except (OSError, http.client.HTTPException) as err:
        return False, f"GET {url}: {type(err).__name__}: {err}".rstrip(": ")
    finally:
        conn.close()
    if expect_status is not None:
        ok = status == expect_status
        return ok, None if ok else f"GET {url}: status {status}, expected {expect_status}"
    ok = 200 <= status < 400
    return ok, None if ok else f"GET {url}: status {status}"


def check_command(
    command: str | Sequence[str], timeout: float = 1.0
) -> tuple[bool, str | None]:
    """Run `command` (a str is shlex-split, no shell); healthy when it exits 0 in time.

    It runs in a process group of its own, which is killed when the
    timeout passes and, once the command has exited, swept of anything it
    left running; the command is always reaped.
    """
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if not argv:
        raise ValueError("command: is empty")
    name = argv[0]
    import tempfile  # only for command checks

    with tempfile.TemporaryFile() as output:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=child_environ(),
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            return False, f"command {name!r}: not found"
        except OSError as err:
            return False, f"command {name!r}: cannot start: {err.strerror or err}"
        try:
            exited = _wait_unreaped(proc, timeout)
        finally:
            # The leader is not reaped yet (or is being killed), so its pgid is still ours.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            code = proc.wait()
        if not exited:
            return False, f"command {name!r}: timed out after {timeout:g}s"
        if code == 0:
            return True, None
        tail = _tail(output)
        if code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
        else:
            how = f"exited with {code}"
        return False, f"command {name!r} {how}" + (f": {tail}" if tail else "")


def _wait_unreaped(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait up to `timeout` for `proc` to exit without reaping it; True if it exited."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is None:
        try:
            proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            return False
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(pidfd, selectors.EVENT_READ)
            return bool(sel.select(timeout))
    finally:
        os.close(pidfd)


def _tail(output: IO[bytes], limit: int = 300) -> str:
    """The last line of what a check command printed, shortened."""
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - 4096))
    text = output.read().decode("utf-8", "replace").strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][-limit:] if lines else ""


def run_health_check(check: HealthCheck, timeout: float | None = None) -> tuple[bool, str | None]:
    """Run one HealthCheck; (healthy, reason it is not). `timeout` overrides check.timeout."""
    if not isinstance(check, HealthCheck):
        raise TypeError(f"check: expected a HealthCheck, not {type(check).__name__}")
    limit = _check_timeout(check.timeout if timeout is None else timeout)
    if check.http is not None:
        return check_http(check.http, limit, check.expect_status)
    if check.tcp is not None:
        reason = probe_tcp([(DEFAULT_HOST, check.tcp, limit)])[0]
        return reason is None, None if reason is None else f"tcp port {check.tcp}: {reason}"
    if check.command is not None:
        return check_command(check.command, limit)
    raise ValueError("check: needs one of http, tcp or command")


__all__ = [
    "check_command",
    "check_http",
    "check_ports",
    "port_open",
    "probe_tcp",
    "run_health_check",
]
