"""Random ids come from the kernel CSPRNG in batched draws: never repeated, never shared
across a fork (``serve --workers`` forks after start-up, when the pool already holds bytes)."""

from __future__ import annotations

import os

from warrantor.domain.clock import random_token


def test_tokens_do_not_repeat_across_many_refills() -> None:
    tokens = [random_token(130) for _ in range(20_000)]  # ~80 refills of the 4 KiB pool
    assert len(set(tokens)) == len(tokens)
    assert all(len(t) == 26 for t in tokens)


def test_a_forked_child_never_hands_out_the_parents_next_bytes() -> None:
    random_token(130)  # the pool now holds unused bytes the child would inherit
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next tokens and leave at once
        os.write(write, " ".join(random_token(130) for _ in range(5)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 4096).decode().split()
    os.close(read)
    parent = [random_token(130) for _ in range(5)]
    assert len(child) == 5 and not set(child) & set(parent)
