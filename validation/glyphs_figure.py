"""Draw ``docs/figures/glyphs.png`` (one rendered example of each of the 175 glyph classes) and
``docs/figures/glyphs_examples.png`` (ten examples of a few classes: the augmentation).

    python validation/glyphs_figure.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

import common  # validation/ is on sys.path when a script runs (python validation/...)
import reporting  # noqa: E402
from gcref.data.glyphs import GLYPH_CLASSES, load_glyphs

FIGURES = common.HERE.parent / "docs" / "figures"


def all_classes(seed: int = 0):
    plt = reporting.plt()
    ds = load_glyphs("train", "all", n_per_class=1, seed=seed)
    cols = 15
    rows = math.ceil(ds.num_classes / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.75, rows * 0.9))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < ds.num_classes:
            ax.imshow(ds.X[i, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_title(ds.classes[i], fontsize=5, pad=1)
    fig.suptitle(f"glyphs: the {ds.num_classes} classes (one random rendering each, 28x28)", fontsize=9)
    fig.tight_layout()
    return fig


def examples(n_classes: int = 14, per_class: int = 10, seed: int = 0):
    plt = reporting.plt()
    ds = load_glyphs("train", "all", n_per_class=per_class, seed=seed)
    pick = np.sort(np.random.default_rng(seed).choice(ds.num_classes, n_classes, replace=False))
    fig, axes = plt.subplots(n_classes, per_class, figsize=(per_class * 0.8, n_classes * 0.8))
    for r, c in enumerate(pick):
        for j in range(per_class):
            ax = axes[r, j]
            ax.imshow(ds.X[c * per_class + j, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(ds.classes[c], fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle("glyphs: 10 renderings of some classes (random font, stroke, affine map, blur, noise)",
                 fontsize=8)
    fig.tight_layout()
    return fig


def main():
    FIGURES.mkdir(parents=True, exist_ok=True)
    reporting.save_figure(all_classes(), FIGURES / "glyphs.png")
    reporting.save_figure(examples(), FIGURES / "glyphs_examples.png")
    print(f"wrote {FIGURES / 'glyphs.png'} and {FIGURES / 'glyphs_examples.png'} ({len(GLYPH_CLASSES)} classes)")


if __name__ == "__main__":
    main()
