"""The job's SQLite state file: the only package that writes its SQL.

Rows and outcomes, the job's identity, snapshots (the way back), rollback outcomes, runs and
the timeline; opened read-only for ``status`` and the report. Imports ``core`` only.
"""
