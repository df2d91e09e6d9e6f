"""Every environment variable batcher reads, read here and nowhere else.

The library takes values (``JobConfig``, ``budget_path``, ...); the command line turns the
process environment into those values, in this one module, so what a variable does is written
down once and a library job is never bent by a variable its caller did not see.
``tests/cli/test_environment.py`` fails if ``os.environ`` or ``os.getenv`` appears anywhere
else in the package.

=====================  ===========================================  =========================  =========================
variable               meaning                                      default                    commands
=====================  ===========================================  =========================  =========================
CLOUDFLARE_API_TOKEN   the API token (``--token-file`` wins)        none: the command refuses  run, plan, rollback,
                                                                    to start (exit 2)          export
CLOUDFLARE_ACCOUNT_ID  account for rows without ``account_id``      none                       run, plan, validate,
                       (``--account-id`` wins)                                                 rollback, export
BATCHER_BASE_URL       the API base URL (``--base-url`` wins)       Cloudflare's v4 API        run, plan, rollback,
                                                                                               export
BATCHER_APP_ID         use the ``/realtime/kit/{app_id}/`` paths    none                       run, plan, rollback,
                       (``--app-id`` wins)                                                     export
XDG_CACHE_HOME         where the per-token rate budget file lives   ``~/.cache``               run, plan, rollback,
                       (``--budget-file`` wins; unused with                                    export
                       ``--rate none``)
BATCHER_NO_UVLOOP      set: the stdlib asyncio event loop, even     uvloop when installed      run, plan, rollback,
                       when uvloop is installed                                                fake-api
=====================  ===========================================  =========================  =========================

For ``rollback`` the base URL, app id and account given by flag or variable are compared
with the ones the job recorded (a difference is refused unless ``--force``); unset, the
recorded ones are used.

A variable set to the empty string counts as not set. ``docs/reference/environment.md``
repeats this table for users. (``HOME`` reaches batcher only through ``Path.home()``, for
the ``~/.cache`` default.)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ..http.budget import default_budget_path

# The variables above, in the table's order: only these are copied out of the environment.
NAMES = (
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_ACCOUNT_ID",
    "BATCHER_BASE_URL",
    "BATCHER_APP_ID",
    "XDG_CACHE_HOME",
    "BATCHER_NO_UVLOOP",
)


@dataclass(frozen=True)
class Environment:
    """The variables batcher reads, as one value (empty ones dropped)."""

    values: Mapping[str, str]

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        """The process environment now (or ``environ``, for a test): read at the moment a
        command starts, so an in-process caller that changes a variable is seen."""
        env = os.environ if environ is None else environ
        return cls({name: env[name] for name in NAMES if env.get(name)})

    @property
    def api_token(self) -> str:
        """``CLOUDFLARE_API_TOKEN``, stripped (a pasted newline is not part of it); "" unset."""
        return self.values.get("CLOUDFLARE_API_TOKEN", "").strip()

    @property
    def account_id(self) -> str | None:
        """``CLOUDFLARE_ACCOUNT_ID``."""
        return self.values.get("CLOUDFLARE_ACCOUNT_ID")

    @property
    def base_url(self) -> str | None:
        """``BATCHER_BASE_URL`` (None: the caller's default)."""
        return self.values.get("BATCHER_BASE_URL")

    @property
    def app_id(self) -> str | None:
        """``BATCHER_APP_ID``."""
        return self.values.get("BATCHER_APP_ID")

    @property
    def is_uvloop_off(self) -> bool:
        """``BATCHER_NO_UVLOOP`` is set: run on the stdlib asyncio loop."""
        return "BATCHER_NO_UVLOOP" in self.values

    def budget_path(self, given: str | None, token: str) -> str:
        """``--budget-file``, else the token's file under ``XDG_CACHE_HOME`` (``~/.cache``)."""
        return given or str(default_budget_path(token, self.values))
