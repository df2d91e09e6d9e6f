"""batcher: safe, resumable mass updates of Cloudflare RealtimeKit meetings.

The library entry points (the CLI is a thin layer over them)::

    from batcher import JobConfig, Secret, run_job
    result = asyncio.run(run_job(JobConfig(input="rows.csv", token=Secret("..."), account_id="acct")))
"""

__version__ = "0.1.0"

from typing import Any

# Lazy (PEP 562): `batcher validate` and `import batcher.model` need no HTTP stack.
_EXPORTS = {
    "JobConfig": "config",
    "RateSpec": "config",
    "Secret": "config",
    "parse_rate": "config",
    "JobResult": "engine",
    "run_job": "engine",
    "validate_input": "checks",
    "AuthError": "errors",
    "BatcherError": "errors",
    "HaltError": "errors",
    "Interrupted": "errors",
    "UsageError": "errors",
    "plan_job": "plan",
    "rollback_job": "rollback",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'batcher' has no attribute {name!r}")
