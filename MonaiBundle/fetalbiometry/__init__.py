"""FetalHeadSeg: fetal head segmentation and biometry in ultrasound.

The package lives inside the MONAI bundle (``MonaiBundle/fetalbiometry``) so that the
bundle folder is self-contained; ``pyproject.toml`` at the repository root installs it.
"""

from pathlib import Path

__version__ = "0.15.2"

#: The MONAI bundle folder (``MonaiBundle/``) that holds this package, its configs and models.
BUNDLE_ROOT = Path(__file__).resolve().parent.parent
