"""Per-sample seeds derived from (run seed, source id, replica): randomness that does not
depend on order, worker or machine."""

from __future__ import annotations

import hashlib


def derive_seed(run_seed: int, source_id: str, replica: int | str) -> int:
    """A 32-bit seed that depends only on its inputs (never on order or worker)."""
    digest = hashlib.sha256(f"{run_seed}\x1f{source_id}\x1f{replica}".encode()).digest()
    return int.from_bytes(digest[:4], "big")
