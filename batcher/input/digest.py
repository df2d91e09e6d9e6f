"""The content hash of an input file, part of the job's identity (streamed, any size)."""

from __future__ import annotations

import hashlib


def file_digest(path: str) -> str:
    """Content hash of an input file, streamed."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
