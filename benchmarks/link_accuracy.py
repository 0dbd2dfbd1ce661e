"""Link accuracy: added latency and loss rate of the emulated links versus what was configured.

For each mode (proxy; kernel when namespaces are allowed) and each configured RTT, a client
echoes 64-byte messages off a real server (TCP with TCP_NODELAY, and UDP) through the link and
the median round trip is compared with the same echo on loopback without any link.
"added" = median(through link) - median(direct); goal: within ±5% of the configured RTT or
±1 ms, whichever is larger. The rtt=0 row is the mode's own overhead.

Loss: N numbered datagrams cross a link with ``up.loss=P``; the fraction the server never saw
is compared with P (with the binomial 95% interval). UDP loss is real in both modes; the
TCP proxy's loss is modelled (see drivers/links/proxy.py) and not measured here.

Run: ``.venv/bin/python benchmarks/link_accuracy.py [--n 20] [--datagrams 2000]``
(kernel mode needs root). Writes benchmarks/results/link_accuracy.json; exits 1 if a latency
row misses the goal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.links import (
    KernelLink,
    TcpLinkProxy,
    UdpLinkProxy,
    parse_link,
    unavailable_reason,
)

RTTS_MS = (0, 2, 10, 50, 100, 200)
LOSSES = (0.01, 0.05, 0.2)
MESSAGE = bytes(64)
Address = tuple[str, int]
SocketContext = Callable[[], AbstractContextManager[None]]


@contextlib.contextmanager
def echo_servers(make_socket: SocketContext, host: str) -> Iterator[tuple[int, int, list[int]]]:
    """TCP and UDP echo servers in threads; yields (tcp port, udp port, datagram numbers seen)."""
    with make_socket():
        tcp = socket.socket()
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((host, 0))
    tcp.listen(8)
    udp.bind((host, 0))
    tcp.settimeout(0.2)
    udp.settimeout(0.2)
    stop = threading.Event()
    seen: list[int] = []

    def serve_tcp(conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with contextlib.suppress(OSError), conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            threading.Thread(target=serve_tcp, args=(conn,), daemon=True).start()

    def serve_udp() -> None:
        while not stop.is_set():
            try:
                data, address = udp.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(data) == 4:
                seen.append(int.from_bytes(data, "big"))
            else:
                udp.sendto(data, address)

    threads = [threading.Thread(target=f, daemon=True) for f in (accept, serve_udp)]
    for thread in threads:
        thread.start()
    try:
        yield tcp.getsockname()[1], udp.getsockname()[1], seen
    finally:
        stop.set()
        for thread in threads:
            thread.join(2)
        tcp.close()
        udp.close()


def tcp_rtts(address: Address, n: int, make_socket: SocketContext) -> list[float]:
    with make_socket():
        sock = socket.socket()
    with sock:
        sock.settimeout(10)
        sock.connect(address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        times = []
        for index in range(n + 2):  # the first two warm up (and the proxy's handshake hold)
            start = time.perf_counter()
            sock.sendall(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                got += len(sock.recv(4096))
            if index >= 2:
                times.append(time.perf_counter() - start)
    return times


def udp_rtts(address: Address, n: int, make_socket: SocketContext) -> list[float]:
    with make_socket():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(5)
        times = []
        for index in range(n + 2):
            start = time.perf_counter()
            sock.sendto(MESSAGE, address)
            sock.recv(4096)
            if index >= 2:
                times.append(time.perf_counter() - start)
    return times


def lost_fraction(address: Address, count: int, make_socket: SocketContext, seen: list) -> float:
    seen.clear()
    with make_socket():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        for number in range(count):
            sock.sendto(number.to_bytes(4, "big"), address)
            time.sleep(0.0002)
    time.sleep(0.3)
    return 1 - len(set(seen)) / count


def proxy_latency(rtt_ms: int, ports: tuple[int, int], n: int) -> tuple[float, float]:
    spec = parse_link(f"rtt={rtt_ms}ms")
    with TcpLinkProxy(spec, ("127.0.0.1", ports[0])) as tcp_link:
        tcp = statistics.median(tcp_rtts(tcp_link.address, n, contextlib.nullcontext))
    with UdpLinkProxy(spec, ("127.0.0.1", ports[1])) as udp_link:
        udp = statistics.median(udp_rtts(udp_link.address, n, contextlib.nullcontext))
    return tcp, udp


def kernel_rows(args: argparse.Namespace, direct: tuple[float, float]) -> list[dict[str, Any]]:
    rows = []
    for rtt_ms in RTTS_MS:
        with (
            KernelLink(parse_link(f"rtt={rtt_ms}ms")) as link,
            echo_servers(link.server_context, link.server_host) as (tcp_port, udp_port, _),
        ):
            host = link.server_host
            tcp = statistics.median(tcp_rtts((host, tcp_port), args.n, link.client_context))
            udp = statistics.median(udp_rtts((host, udp_port), args.n, link.client_context))
        rows += latency_rows("kernel", rtt_ms, (tcp, udp), direct)
    return rows


def latency_rows(
    mode: str, rtt_ms: int, measured: tuple[float, float], direct: tuple[float, float]
) -> list[dict[str, Any]]:
    rows = []
    for transport, value, base in zip(("tcp", "udp"), measured, direct, strict=True):
        added_ms = (value - base) * 1e3
        error_ms = added_ms - rtt_ms
        rows.append(
            {
                "mode": mode,
                "transport": transport,
                "configured_ms": rtt_ms,
                "added_ms": round(added_ms, 3),
                "ratio": round(added_ms / rtt_ms, 4) if rtt_ms else None,
                "error_ms": round(error_ms, 3),
                "ok": abs(error_ms) <= max(0.05 * rtt_ms, 1.0),
            }
        )
    return rows


def loss_rows(args: argparse.Namespace, mode: str) -> list[dict[str, Any]]:
    rows = []
    for loss in LOSSES:
        spec = parse_link(f"up.loss={loss * 100:g}%,seed=42")
        if mode == "proxy":
            with (
                echo_servers(contextlib.nullcontext, "127.0.0.1") as (_, udp_port, seen),
                UdpLinkProxy(spec, ("127.0.0.1", udp_port)) as proxy,
            ):
                measured = lost_fraction(
                    proxy.address, args.datagrams, contextlib.nullcontext, seen
                )
        else:
            with (
                KernelLink(spec, protocol="udp") as link,
                echo_servers(link.server_context, link.server_host) as (_, udp_port, seen),
            ):
                measured = lost_fraction(
                    (link.server_host, udp_port), args.datagrams, link.client_context, seen
                )
        half = 1.96 * (loss * (1 - loss) / args.datagrams) ** 0.5
        rows.append(
            {
                "mode": mode,
                "configured": loss,
                "measured": round(measured, 4),
                "ratio": round(measured / loss, 3),
                "in_95pct_interval": abs(measured - loss) <= half,
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=20, help="echo round trips per row")
    parser.add_argument("--datagrams", type=int, default=2000, help="datagrams per loss row")
    args = parser.parse_args()

    with echo_servers(contextlib.nullcontext, "127.0.0.1") as (tcp_port, udp_port, _):
        direct = (
            statistics.median(tcp_rtts(("127.0.0.1", tcp_port), args.n, contextlib.nullcontext)),
            statistics.median(udp_rtts(("127.0.0.1", udp_port), args.n, contextlib.nullcontext)),
        )
        latency: list[dict[str, Any]] = []
        for rtt_ms in RTTS_MS:
            measured = proxy_latency(rtt_ms, (tcp_port, udp_port), args.n)
            latency += latency_rows("proxy", rtt_ms, measured, direct)
    losses = loss_rows(args, "proxy")
    reason = unavailable_reason()
    if reason is None:
        latency += kernel_rows(args, direct)
        losses += loss_rows(args, "kernel")
    else:
        print(f"kernel mode skipped: {reason}")

    print(f"direct loopback echo: tcp {direct[0] * 1e3:.3f} ms, udp {direct[1] * 1e3:.3f} ms")
    print("\nadded latency (median echo through link - direct), goal ±5% or ±1 ms")
    print(f"{'mode':7} {'proto':5} {'conf ms':>8} {'added ms':>9} {'ratio':>7} {'err ms':>7}  ok")
    for row in latency:
        ratio = f"{row['ratio']:.4f}" if row["ratio"] is not None else "-"
        print(
            f"{row['mode']:7} {row['transport']:5} {row['configured_ms']:8} "
            f"{row['added_ms']:9.3f} {ratio:>7} {row['error_ms']:7.3f}  {row['ok']}"
        )
    print(f"\nUDP loss, {args.datagrams} datagrams per row (real drops in both modes)")
    print(f"{'mode':7} {'conf':>6} {'measured':>9} {'ratio':>6}  in 95% CI")
    for row in losses:
        print(
            f"{row['mode']:7} {row['configured']:6.2%} {row['measured']:9.2%} "
            f"{row['ratio']:6.3f}  {row['in_95pct_interval']}"
        )
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    (results / "link_accuracy.json").write_text(
        json.dumps({"direct_s": direct, "latency": latency, "loss": losses}, indent=2)
    )
    return 0 if all(row["ok"] for row in latency) else 1


if __name__ == "__main__":
    sys.exit(main())
