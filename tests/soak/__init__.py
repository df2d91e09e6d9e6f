"""The soak: seeded random episodes against the fake API, with invariants checked after each.

An episode (``plan.draw_episode(seed)``) is a random job or two drawn from a
seed: mode, rows over one or two accounts, CSV / JSONL / stdin, patches over
random schema fields including storage secrets and nulls, meetings carrying
fields the schema does not know, a random fault schedule on the fake API,
``kill -9`` / SIGINT / SIGTERM points, resumes with and without
``--retry-failed``, sometimes a second batcher process on the same token and
an edit of the input mid-job. ``episode.run_episode`` drives ``python -m
batcher`` subprocesses through it; ``invariants.check_all`` then checks every
promise. ``python -m tests.soak --seed N`` replays one episode.
"""
