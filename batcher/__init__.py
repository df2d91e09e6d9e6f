"""batcher: safe, resumable mass updates of Cloudflare RealtimeKit meetings.

The library entry points (the CLI is a thin layer over them)::

    from batcher import JobConfig, run_job, validate_input, plan_job, rollback_job
"""

__version__ = "0.1.0"
