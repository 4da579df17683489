"""Regenerate docs/images/phantoms-planes.png: head, abdomen and femur planes of
``fetalbiometry synth 2d``, the polar B-mode model above the Cartesian one (seeds 3, 4, 5).

    .venv/bin/python docs/experiments/scripts/phantom_planes_figure.py docs/images/phantoms-planes.png
"""

import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import SimpleITK as sitk

from fetalbiometry.data.synthetic import IMAGE_MODELS, PLANE_KINDS, make_plane


def main(out_path: str) -> None:
    figure, axes = plt.subplots(len(IMAGE_MODELS), len(PLANE_KINDS), figsize=(12, 5.5))
    for row, model in enumerate(IMAGE_MODELS):
        for column, kind in enumerate(PLANE_KINDS):
            phantom = make_plane(kind, 3 + column, shape=(270, 400), image_model=model)
            axes[row, column].imshow(sitk.GetArrayFromImage(phantom.image), cmap="gray", vmin=0, vmax=255)
            axes[row, column].set_title(f"{kind}, {model}, {phantom.truth['ga_weeks']:.1f} weeks", fontsize=10)
            axes[row, column].axis("off")
    figure.tight_layout()
    figure.savefig(out_path, dpi=80)


if __name__ == "__main__":
    main(sys.argv[1])
