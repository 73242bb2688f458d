"""How connections are counted per client (graph/http/connections.py), on transports
that stand for sockets; the bounds on real connections are in test_side_channels.py."""

from __future__ import annotations

import asyncio

import pytest

from graph.http.connections import Connections


class Socketish(asyncio.Transport):
    """A transport that only knows whether it is closing, or was aborted."""

    def __init__(self) -> None:
        super().__init__()
        self.closing = False
        self.aborted = False

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.aborted = True


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", True),  # one /64: one client
        ("2001:db8:1:2::1", "2001:db8:1:3::1", False),
        ("::ffff:192.0.2.7", "192.0.2.7", True),  # IPv4 as IPv6 is the IPv4 address
        ("192.0.2.7", "192.0.2.8", False),
    ],
)
def test_a_client_is_its_address_or_its_ipv6_network(one: str, other: str, same: bool) -> None:
    assert (Connections.key(one) == Connections.key(other)) is same


async def test_a_connection_counts_until_it_is_gone_not_when_it_starts_closing() -> None:
    connections = Connections(per_address=1, trusted_proxies=(), linger=60)
    first, second = Socketish(), Socketish()
    # given one address at its bound, whose connection is closing with bytes unread
    assert connections.admit("192.0.2.7", first)
    first.closing = True
    # then it still counts: another connection from the address is refused
    assert not connections.admit("192.0.2.7", second)
    # and once it is gone, the address may connect again
    connections.release(first)
    connections.release(second)
    assert connections.admit("192.0.2.7", Socketish())


async def test_a_closed_connection_whose_bytes_are_not_read_is_dropped_after_the_linger() -> None:
    connections = Connections(per_address=4, trusted_proxies=(), linger=5)
    lingering, open_one = Socketish(), Socketish()
    assert connections.admit("192.0.2.7", lingering)
    assert connections.admit("192.0.2.7", open_one)
    lingering.closing = True
    connections.reap(now=100.0)  # first seen closing
    connections.reap(now=104.0)
    assert not lingering.aborted
    connections.reap(now=105.0)
    assert lingering.aborted and not open_one.aborted


@pytest.mark.parametrize(
    ("proxies", "exempt"),
    [
        (("10.0.0.5",), {"10.0.0.5"}),
        (("172.16.0.0/12",), {"172.20.1.1"}),
        (("*",), {"10.0.0.5", "172.20.1.1", "192.0.2.7", "2001:db8::1"}),
        ((), set()),
    ],
)
async def test_trusted_proxies_are_not_bounded(proxies: tuple[str, ...], exempt: set[str]) -> None:
    connections = Connections(per_address=1, trusted_proxies=proxies, linger=60)
    for address in ("10.0.0.5", "172.20.1.1", "192.0.2.7", "2001:db8::1"):
        admitted = [connections.admit(address, Socketish()) for _ in range(3)]
        assert admitted == ([True] * 3 if address in exempt else [True, False, False]), address
