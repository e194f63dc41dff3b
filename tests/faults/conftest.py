"""What the fault tests share: tokens the services they start trust, and one way to print
a measured figure.

Each fault test starts the processes it breaks itself (module- or test-scoped): the
session's components (tests/conftest.py) are shared with every other module and are
never killed here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import SecretStr

from modelserve.common.tokens import TokenSettings, TokenSigner

# JWT_SECRET of every service a fault test starts.
SECRET = "faults-tests-secret-of-at-least-32-bytes"


@pytest.fixture(scope="session")
def jwt_secret() -> str:
    return SECRET


@pytest.fixture(scope="session")
def signer() -> TokenSigner:
    """Signs tokens as the services of these tests expect them (JWT_SECRET `jwt_secret`)."""
    return TokenSigner.from_settings(TokenSettings(secret=SecretStr(SECRET)))


@pytest.fixture(scope="session")
def figure() -> Callable[[str, float], None]:
    """`figure(label, seconds)`: print a measured recovery time, one line that
    `pytest -s` shows and docs/operations.md's failure table quotes. Figures are printed,
    never asserted: the machine is shared, and a test must not depend on its speed."""

    def show(label: str, seconds: float) -> None:
        print(f"\nFIGURE {label}: {seconds:.1f} s", flush=True)

    return show
