"""batcher: safe, resumable mass updates of Cloudflare RealtimeKit meetings.

The library entry points (the CLI is a thin layer over them)::

    from batcher import JobConfig, Secret, run_job
    result = asyncio.run(run_job(JobConfig(input="rows.csv", token=Secret("..."), account_id="acct")))
"""

__version__ = "0.1.0"

from .config import JobConfig, RateSpec, Secret, parse_rate
from .engine import JobResult, run_job, validate_input
from .errors import AuthError, BatcherError, HaltError, Interrupted, UsageError
from .plan import plan_job
from .rollback import rollback_job

__all__ = [
    "AuthError",
    "BatcherError",
    "HaltError",
    "Interrupted",
    "JobConfig",
    "JobResult",
    "RateSpec",
    "Secret",
    "UsageError",
    "__version__",
    "parse_rate",
    "plan_job",
    "rollback_job",
    "run_job",
    "validate_input",
]
