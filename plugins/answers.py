"""The answer cache: answers to questions that depend on nothing but their arguments and the
database, reused until the next commit.

While a downtime runs, people ask `!downtime show 7` again and again; each answer costs a
transaction, three queries and a template (about 2 ms), a reused one about 0.02 ms. Only
commands declared ``cacheable`` (show, notice, history) are kept, only answers that were not
refusals, and all of them are dropped as soon as anything commits: the generation is the
database's commit count (`adapters.db.CommitCounter`), so a change made by a command, a
reminder or a job is seen by the next question. With [ha] enabled the count also includes the
database's change token (adapters/change_token.py), so another instance's change is seen within
about a second.

An answer also depends on who reads it (models/confidential.py: confidential words are said
only privately, to CiDuty and the requester), so the key holds its audience: answers said in a
channel are shared by every channel and network; a private answer is kept for its asker only.
"""
from __future__ import annotations

from collections.abc import Callable

from models.ports import Incoming

Key = tuple[str, str, str]


class AnswerCache:
    def __init__(self, generation: Callable[[], int]):
        self.generation = generation
        self._answers: dict[Key, list[str]] = {}
        self._generation = -1

    @staticmethod
    def key(command: str, args: str, message: Incoming) -> Key:
        """The same question however it is spaced, for the same audience."""
        return command, " ".join(args.split()), audience_key(message)

    def get(self, key: Key) -> list[str] | None:
        """The answer kept for `key`, if nothing committed since it was given."""
        generation = self.generation()
        if generation != self._generation:
            self._answers, self._generation = {}, generation
        return self._answers.get(key)

    def put(self, key: Key, answer: list[str]) -> None:
        """Keep an answer, unless something committed while it was being made."""
        if self.generation() == self._generation:
            self._answers[key] = answer


def audience_key(message: Incoming) -> str:
    """Everyone in a channel reads the same answer (""); a private answer is its asker's own."""
    if message.room:
        return ""
    return f"{message.network} {message.account or ''} {message.reply_target}"
