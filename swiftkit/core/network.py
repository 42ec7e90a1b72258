"""The network of a multi-node run: which interface reaches the master, and whether the master answers.

gloo binds the address the machine's hostname resolves to unless ``GLOO_SOCKET_IFNAME`` names an interface; on
machines whose hostname resolves to 127.0.0.1 (most containers) a second node then never connects. swiftkit picks
the interface the kernel would route the master address through, and says which.
"""
from __future__ import annotations

import socket
import struct
import time
from typing import Callable, Optional

SIOCGIFADDR = 0x8915
"""Linux ioctl: an interface's IPv4 address."""


def source_address(host: str) -> Optional[str]:
    """The local IPv4 address the kernel uses to reach ``host`` (a UDP connect sends nothing); None if unroutable."""
    try:
        target = socket.gethostbyname(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect((target, 9))
            return str(s.getsockname()[0])
    except OSError:
        return None


def interface_addresses() -> dict[str, str]:
    """Interface name -> its IPv4 address, for every interface that has one (Linux)."""
    import fcntl

    out: dict[str, str] = {}
    for _, name in socket.if_nameindex():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
        out[name] = socket.inet_ntoa(packed[20:24])
    return out


def interface_names() -> list[str]:
    return [name for _, name in socket.if_nameindex()]


def interface_for(host: str) -> Optional[str]:
    """The interface whose address is the source of the route to ``host``; None when there is none."""
    source = source_address(host)
    if source is None:
        return None
    for name, address in interface_addresses().items():
        if address == source:
            return name
    return None


def wait_for_port(host: str, port: int, timeout: float, *, poll: float = 1.0,
                  on_wait: Optional[Callable[[float], None]] = None) -> Optional[str]:
    """Wait until ``host:port`` accepts a TCP connection; None when it did, else the last error, after ``timeout``
    seconds at most. ``on_wait(elapsed)`` is called once per failed attempt."""
    start = time.monotonic()
    last = "no attempt"
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(poll, 5.0)):
                return None
        except OSError as exc:
            last = exc.strerror or type(exc).__name__
        elapsed = time.monotonic() - start
        if elapsed >= timeout:
            return last
        if on_wait is not None:
            on_wait(elapsed)
        time.sleep(min(poll, max(timeout - elapsed, 0.0)))
