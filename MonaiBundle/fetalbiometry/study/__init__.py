"""Volumetric reproducibility and agreement studies (3D whole-head paper, Sec. 3.2, Figs. 8-9).

``run_study(manifest, out_dir, ...)`` segments every volume of a manifest, measures head
volumes, and writes ``volumes.csv``, ``subjects.csv``, ``summary.json`` and ``report.html``;
``python -m fetalbiometry.study`` (or ``torchrun ... -m fetalbiometry.study``) runs it from a shell.

Modules: ``manifest`` (read/validate), ``statistics`` (pure functions), ``tables`` (CSV),
``runner`` (per-volume work, resume), ``distributed`` (torchrun sharding), ``summary``,
``plots`` and ``report`` (figures, HTML), ``pipeline`` (``run_study``), ``command`` (``main``).
"""

from importlib import import_module
from typing import Any

__all__ = ["StudySummary", "main", "run_study"]

_HOMES = {"StudySummary": "summary", "main": "command", "run_study": "pipeline"}


def __getattr__(name: str) -> Any:
    """Import on first use (PEP 562): the pipeline pulls in torch and MONAI, which the
    ``fetalbiometry`` command should not pay for when it only builds its parser."""
    if name in _HOMES:
        return getattr(import_module(f"fetalbiometry.study.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'fetalbiometry.study' has no attribute '{name}'")
