import hashlib

from pipeline.core.seeds import derive_seed


def test_derive_seed_is_32_bits_of_the_sha256_of_its_inputs_only():
    expected = int.from_bytes(hashlib.sha256(b"7\x1fcat/a.png\x1f2").digest()[:4], "big")
    assert derive_seed(7, "cat/a.png", 2) == expected
    assert derive_seed(7, "cat/a.png", "2") == expected  # a replica number or a salt, as text
    seeds = {derive_seed(s, i, r) for s in (0, 1) for i in ("a", "b") for r in (0, 1, "split")}
    assert len(seeds) == 12 and all(0 <= s < 2**32 for s in seeds)
