"""The rollout's progress bar (rich): finished episodes, turn, live envs, generated tokens/s."""

from __future__ import annotations

import time


class RolloutProgress:
    """A rich progress bar: finished episodes, turn, live envs, generated tokens/s."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.enabled = total, enabled
        self.turn, self.tokens, self.started = 0, 0, time.perf_counter()

    def __enter__(self) -> RolloutProgress:
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("rollout"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                TextColumn("turn {task.fields[turn]}  live {task.fields[live]}  {task.fields[speed]}"))
            self.bar.__enter__()
            self.task = self.bar.add_task("rollout", total=self.total, turn=0, live=self.total, speed="")
        return self

    def update(self, finished: int, live: int, new_tokens: int) -> None:
        self.turn += 1
        self.tokens += new_tokens
        if self.enabled:
            speed = f"{self.tokens / max(time.perf_counter() - self.started, 1e-9):,.0f} tok/s"
            self.bar.update(self.task, completed=finished, turn=self.turn, live=live, speed=speed)

    def __exit__(self, *exc_info) -> None:
        if self.enabled:
            self.bar.__exit__(*exc_info)
