"""Run a script or module with the 2D planes' darker scalp in the 3D volumes too: the state measured
and rejected in docs/experiments/2026-12-05-sim-to-real-scalp-first-trimester.md (the shipped 3D
model was trained on volumes whose scalp echoes as dense soft tissue).

    python docs/experiments/scripts/dark_scalp_volumes.py docs/experiments/scripts/five_grids.py -
    python docs/experiments/scripts/dark_scalp_volumes.py -m fetalbiometry.segment3d.phantom_dataset OUT ...
"""

from __future__ import annotations

import runpy
import sys

from fetalbiometry.data.anatomy import HeadAnatomy

if __name__ == "__main__":
    HeadAnatomy.echo.__defaults__ = ("scalp",)  # the scalp_tissue of every volume's head
    if sys.argv[1] == "-m":
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
