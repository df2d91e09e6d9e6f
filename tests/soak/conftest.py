"""The soak's pytest entry: a ``soak`` marker (select with ``-m soak``, leave out with ``-m 'not soak'``)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: random episodes of the soak (python -m tests.soak); -m 'not soak' skips them"
    )
