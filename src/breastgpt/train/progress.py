"""A rich progress bar over optimizer steps (main process only; a no-op when disabled)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def step_progress(total: int, done: int, enabled: bool, label: str) -> Iterator[Callable[[float], None]]:
    if not enabled:
        yield lambda loss: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]}"), TimeRemainingColumn())
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task(label, total=total, completed=done, loss="-")

        def advance(loss: float) -> None:
            progress.update(task, advance=1, loss=f"{loss:.4f}")

        yield advance
