"""Run a script or module with 0.13.0's darker scalp in the 3D volumes too: the state measured and
rejected in docs/experiments/2026-12-05-sim-to-real-scalp-first-trimester.md (the shipped 3D model
was trained on volumes whose scalp echoes as dense soft tissue). 0.13.0's scalp: level 130, with an
acoustic row of its own (dense, soft tissue's attenuation), which the planes' scalp no longer has.

    python docs/experiments/scripts/dark_scalp_volumes.py docs/experiments/scripts/five_grids.py -
    python docs/experiments/scripts/dark_scalp_volumes.py -m fetalbiometry.segment3d.phantom_dataset OUT ...
"""

from __future__ import annotations

import runpy
import sys

from fetalbiometry.data.anatomy import ATTENUATION_PER_MM, ECHO_LEVEL, SCATTERER_DENSITY, HeadAnatomy

if __name__ == "__main__":
    ECHO_LEVEL["scalp"], SCATTERER_DENSITY["scalp"], ATTENUATION_PER_MM["scalp"] = 130.0, 1.0, 0.03
    HeadAnatomy.echo.__defaults__ = ("scalp",)  # the scalp_tissue of every volume's head
    if sys.argv[1] == "-m":
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = sys.argv[1:]
        runpy.run_path(sys.argv[0], run_name="__main__")
