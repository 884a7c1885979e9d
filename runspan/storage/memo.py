"""What a writer knows its database holds, so that a batch skips the statements that would change
nothing: the span names already in ``span_names``, and each day and run type's floor in
``slowest_runs`` (a run no slower than it cannot enter).

Learnt only from transactions that committed: what a batch learns is staged, and kept when its
transaction commits (a rolled-back batch would otherwise leave the writer sure of names that are
not there). A floor only rises, so one remembered from an earlier batch is at most the real one:
a run at or below it is certainly out. Bounded: the names up to ``MAX_NAMES``, the floors of the
last few days.
"""

from __future__ import annotations

MAX_NAMES = 10_000
_FLOOR_DAYS = 3

Name = tuple[str, str, str]
Group = tuple[int, str]


class WriterMemo:
    def __init__(self) -> None:
        self.names: set[Name] = set()
        self.floors: dict[Group, float] = {}
        self._names: set[Name] = set()
        self._floors: dict[Group, float] = {}

    def stage_names(self, names: set[Name]) -> None:
        self._names |= names

    def stage_floor(self, group: Group, floor: float) -> None:
        self._floors[group] = floor

    def committed(self) -> None:
        """The batch's transaction committed: keep what it learnt."""
        if len(self.names) + len(self._names) <= MAX_NAMES:
            self.names |= self._names
        self.floors.update(self._floors)
        if self._floors:
            newest = max(day for day, _ in self.floors)
            self.floors = {
                group: floor
                for group, floor in self.floors.items()
                if group[0] > newest - _FLOOR_DAYS
            }
        self.forget_staged()

    def forget_staged(self) -> None:
        """The batch's transaction did not commit (or a new one begins)."""
        self._names.clear()
        self._floors.clear()
