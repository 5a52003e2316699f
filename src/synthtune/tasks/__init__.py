"""Tasks: one module per skill, each exposing ``TASK`` (a :class:`~synthtune.tasks.base.Task`).

Adding a task is adding a module here; the pipelines find it by name.
"""

import importlib
import pkgutil

from .base import Task


def available_tasks() -> list[str]:
    """Names of the task modules in this package."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name != "base" and not m.name.startswith("_"))


def get_task(name: str) -> Task:
    """The task named ``name``; an unknown name fails with the list of allowed ones."""
    if name not in available_tasks():
        raise ValueError(f"generation.task={name!r} is unknown; allowed: {available_tasks()}")
    return importlib.import_module(f"{__name__}.{name}").TASK
