"""Volumetric reproducibility and agreement studies (3D whole-head paper, Sec. 3.2, Figs. 8-9).

``run_study(manifest, out_dir, ...)`` segments every volume of a manifest, measures head
volumes, and writes ``volumes.csv``, ``subjects.csv``, ``summary.json`` and ``report.html``;
``python -m fetalbiometry.study`` (or ``torchrun ... -m fetalbiometry.study``) runs it from a shell.

Modules: ``manifest`` (read/validate), ``statistics`` (pure functions), ``tables`` (CSV),
``runner`` (per-volume work, resume), ``distributed`` (torchrun sharding), ``summary``,
``plots`` and ``report`` (figures, HTML), ``pipeline`` (``run_study``), ``command`` (``main``).
"""

from fetalbiometry.study.command import main
from fetalbiometry.study.pipeline import run_study
from fetalbiometry.study.summary import StudySummary

__all__ = ["StudySummary", "main", "run_study"]
