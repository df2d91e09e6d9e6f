"""The pipeline: pre-flight into the state, the bounded queue, the workers, the group commits.

The one package that wires input, state, http and report together (``run_job``).
"""
