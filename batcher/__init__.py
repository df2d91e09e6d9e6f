"""batcher: safe, resumable mass updates of Cloudflare RealtimeKit meetings.

The library entry points (the CLI is a thin layer over them)::

    from batcher import JobConfig, Secret, run_job
    result = asyncio.run(run_job(JobConfig(input="rows.csv", token=Secret("..."), account_id="acct")))

The package is the pipeline (see docs/design/architecture.md): ``core`` (pure rules), then
``input``, ``state`` and ``http`` (the three edges), ``report``, ``run`` (the one place that wires
them), ``commands``, ``cli``; ``fake`` is the local API. Imports run one way only.
"""

from typing import Any

from ._version import __version__

# Lazy (PEP 562): `batcher validate` and `import batcher.core.rows` need no HTTP stack.
_EXPORTS = {
    "JobConfig": "core.config",
    "RateSpec": "core.config",
    "Secret": "core.config",
    "parse_rate": "core.config",
    "JobResult": "run.engine",
    "run_job": "run.engine",
    "validate_input": "commands.validate",
    "AuthError": "errors",
    "BatcherError": "errors",
    "HaltError": "errors",
    "Interrupted": "errors",
    "UsageError": "errors",
    "plan_job": "commands.plan",
    "rollback_job": "commands.rollback",
    "verify_job": "commands.verify",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'batcher' has no attribute {name!r}")
