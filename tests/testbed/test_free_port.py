"""Ports the test bed hands its servers come from outside the kernel's ephemeral range, so an
outgoing connection cannot take one before its server binds it."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import pytest

from modelserve.testbed.processes import LOWEST_PORT, free_port, outgoing_ports


def test_free_ports_are_outside_the_ephemeral_range_and_bindable() -> None:
    outgoing = outgoing_ports()
    drawn = [free_port() for _ in range(200)]
    assert all(port >= LOWEST_PORT and port not in outgoing for port in drawn)
    assert len(set(drawn)) > 150  # drawn at random, not one port over and over
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", drawn[-1]))


def test_a_port_someone_listens_on_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        other = free_port()
        draws = iter([port - LOWEST_PORT, other - LOWEST_PORT])
        monkeypatch.setattr(secrets, "randbelow", lambda _: next(draws))
        assert free_port() == other


def test_the_range_is_read_from_the_kernel_and_defaults_to_linuxs(tmp_path: Path) -> None:
    custom = tmp_path / "range"
    custom.write_text("40000\t50000\n")
    assert outgoing_ports(custom) == range(40000, 50001)
    assert outgoing_ports(tmp_path / "missing") == range(32768, 61000)
