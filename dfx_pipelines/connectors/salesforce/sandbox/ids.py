"""Salesforce record ids: 15-char case-sensitive ids with their 3-char case-safe checksum (18 chars).

Layout of the 15 chars: key prefix (3, names the object) + pod (2) + reserved (1) + record number (9,
base 62). The checksum makes an 18-char id unique case-insensitively: for each 5-char chunk, a bit per
upper-case letter, mapped onto `A..Z0..5`. Bulk generation is vectorised with numpy because the
generator mints millions of ids.
"""

from __future__ import annotations

import numpy as np

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CHECKSUM_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
POD = "8d"
RESERVED = "0"
# Record numbers start here so ids look like a real org's rather than a run of zeros.
RECORD_NUMBER_OFFSET = 3_600_000
_ID_CHARS = frozenset(BASE62)


def checksum(id15: str) -> str:
    suffix = []
    for chunk_start in (0, 5, 10):
        flags = 0
        for position, char in enumerate(id15[chunk_start : chunk_start + 5]):
            if "A" <= char <= "Z":
                flags |= 1 << position
        suffix.append(CHECKSUM_CHARS[flags])
    return "".join(suffix)


def to_18(record_id: str) -> str | None:
    """The 18-char form of a 15- or 18-char id (the case of the first 15 chars wins), or None if malformed."""
    if len(record_id) not in (15, 18) or not set(record_id) <= _ID_CHARS:
        return None
    id15 = record_id[:15]
    return id15 + checksum(id15)


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def make_id(key_prefix: str, record_number: int) -> str:
    """One 18-char id for the `record_number`-th record of the object with `key_prefix`."""
    id15 = key_prefix + POD + RESERVED + _base62(RECORD_NUMBER_OFFSET + record_number, 9)
    return id15 + checksum(id15)


_ALPHABET_BYTES = np.frombuffer(BASE62.encode(), dtype=np.uint8)
_CHECKSUM_BYTES = np.frombuffer(CHECKSUM_CHARS.encode(), dtype=np.uint8)


def make_ids(key_prefix: str, record_numbers: np.ndarray) -> list[str]:
    """Vectorised `make_id` for many record numbers at once (same results, ~100x faster)."""
    numbers = np.asarray(record_numbers, dtype=np.int64) + RECORD_NUMBER_OFFSET
    count = numbers.shape[0]
    matrix = np.empty((count, 18), dtype=np.uint8)
    head = (key_prefix + POD + RESERVED).encode()
    matrix[:, :6] = np.frombuffer(head, dtype=np.uint8)
    remaining = numbers.copy()
    for column in range(14, 5, -1):  # the 9 record-number digits, least significant last
        matrix[:, column] = _ALPHABET_BYTES[remaining % 62]
        remaining //= 62
    upper = (matrix[:, :15] >= ord("A")) & (matrix[:, :15] <= ord("Z"))
    weights = (1 << np.arange(5)).astype(np.int64)
    for chunk in range(3):
        flags = upper[:, chunk * 5 : chunk * 5 + 5].astype(np.int64) @ weights
        matrix[:, 15 + chunk] = _CHECKSUM_BYTES[flags]
    return matrix.view("S18").ravel().astype("U18").tolist()
