"""TCP and UDP echo listeners and a prober, run inside the test namespaces of test_firewall.py.

    python3 netprobe.py serve LOG PROTO:PORT...
        listen on 0.0.0.0 on each port; print "ready" once all are bound; for every TCP
        connection and UDP datagram append "PROTO PORT SOURCE" to LOG, then echo the data back
    python3 netprobe.py probe HOST TIMEOUT [--source ADDRESS] PROTO:PORT...
        send "probe" to each port at once (from ADDRESS when given) and print a JSON object
        "PROTO:PORT" -> whether the echo came back within TIMEOUT seconds

Standard library only: the script runs under `ip netns exec`, outside the test process."""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

PAYLOAD = b"probe"


def _parse(spec: str) -> tuple[str, int]:
    proto, _, port = spec.partition(":")
    if proto not in ("tcp", "udp"):
        raise SystemExit(f"netprobe: {spec!r}: expected tcp:PORT or udp:PORT")
    return proto, int(port)


def serve(log_path: str, specs: list[str]) -> None:
    selector = selectors.DefaultSelector()
    for proto, port in map(_parse, specs):
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        sock = socket.socket(socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))
        if proto == "tcp":
            sock.listen(16)
        selector.register(sock, selectors.EVENT_READ, (proto, port))
    print("ready", flush=True)
    with open(log_path, "a", buffering=1) as log:
        while True:
            for key, _ in selector.select():
                ready = key.fileobj
                assert isinstance(ready, socket.socket)
                proto, port = key.data
                if proto == "udp":
                    data, source = ready.recvfrom(512)
                    log.write(f"udp {port} {source[0]}\n")
                    ready.sendto(data, source)
                    continue
                conn, source = ready.accept()
                log.write(f"tcp {port} {source[0]}\n")
                with conn:
                    conn.settimeout(2)
                    with contextlib.suppress(OSError):
                        conn.sendall(conn.recv(512))


def _probe_one(host: str, timeout: float, source: str | None, spec: str) -> bool:
    proto, port = _parse(spec)
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        try:
            if proto == "tcp":
                sock.connect((host, port))
                sock.sendall(PAYLOAD)
                return sock.recv(512) == PAYLOAD
            sock.sendto(PAYLOAD, (host, port))
            return sock.recvfrom(512)[0] == PAYLOAD
        except OSError:  # timeout, refused, unreachable
            return False


def probe(host: str, timeout: float, source: str | None, specs: list[str]) -> None:
    with ThreadPoolExecutor(max_workers=len(specs) or 1) as pool:
        results = pool.map(lambda spec: _probe_one(host, timeout, source, spec), specs)
        print(json.dumps(dict(zip(specs, results, strict=True))))


def main(argv: list[str]) -> None:
    if argv[:1] == ["serve"] and len(argv) >= 3:
        serve(argv[1], argv[2:])
    elif argv[:1] == ["probe"] and len(argv) >= 3:
        host, timeout, rest = argv[1], float(argv[2]), argv[3:]
        source = None
        if rest[:1] == ["--source"]:
            source, rest = rest[1], rest[2:]
        probe(host, timeout, source, rest)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
