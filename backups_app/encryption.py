"""PLACEHOLDER until the "age" helper's module lands in main: the contract, with encryption off.

recipients() -> list[str]; encrypting(target, recipients) -> context manager yielding a writable
(closing it finishes the age stream, not target); decrypting(source) -> readable;
is_encrypted(header) -> bool.
"""

from __future__ import annotations

import contextlib
from typing import BinaryIO, Iterator

AGE_HEADER = b"age-encryption.org/v1\n"


def recipients() -> list[str]:
    return []


@contextlib.contextmanager
def encrypting(target: BinaryIO, recipients: list[str]) -> Iterator[BinaryIO]:
    yield target


def decrypting(source: BinaryIO, *, archive_name: str = "", encrypted_to=()) -> BinaryIO:
    return source


def is_encrypted(header: bytes) -> bool:
    return header.startswith(AGE_HEADER)
