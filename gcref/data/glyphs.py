"""Glyphs: an offline many-class image dataset rendered from the TrueType fonts matplotlib ships.

Why: the paper's transfer claim (Munn et al. 2024, Fig. 4) pre-trains on 64 CIFAR-FS classes and
tests on 20 new ones. CIFAR-FS cannot be downloaded here, so -- as Omniglot and notMNIST were
built from characters -- gcref renders a character dataset with many classes on the fly: no
download and no new dependency (Pillow and the fonts come with matplotlib).

Classes
-------
The candidates (:data:`CANDIDATES`) are digits, Latin, Greek and Cyrillic letters, IPA letters
and symbols that **every** one of the 16 fonts of :data:`FONTS` covers (DejaVu Sans, Serif and
Sans Mono in their 4 faces, STIX General in its 4 faces; Computer Modern is left out: its files
put Greek and many symbols at TeX code points, so requiring every class in every font would leave
only ASCII). Characters that look alike are then removed by one stated rule, :func:`glyph_distance`:

    For one font ``f`` and stretch ``s``, ``N_f(c, s)`` is the glyph of ``c`` drawn without
    augmentation, its ink bounding box stretched horizontally by ``s``, scaled (aspect kept) so
    that its longer side is :data:`TEMPLATE_BOX` pixels, centred in a
    :data:`TEMPLATE_SIZE`-square and blurred (Gaussian, sigma :data:`TEMPLATE_BLUR` px); ink in
    ``[0, 1]``. The distance of two characters in font ``f`` is

        d_f(a, b) = min over s in STRETCHES of min( rms(N_f(a, 1) - N_f(b, s)),
                                                   rms(N_f(b, 1) - N_f(a, s)) ),

    and ``d(a, b)`` is the median of ``d_f(a, b)`` over the 16 fonts. Walking the candidates in
    order, a character is kept if ``d >= MIN_DISTANCE`` to every character kept before it,
    otherwise dropped (the first of a look-alike group stays: Latin before Greek before
    Cyrillic).

On matplotlib's fonts the 357 candidates give **175 classes** (181 dropped). Why not more: the
candidates are what all 16 fonts cover (no arrows, no math beyond ∂, because the mono faces lack
them), and the rule is conservative -- a whole-image distance cannot weigh a small distinguishing
mark (a dot, a bar, a tail) against the stroke-weight differences between cases, so the threshold
that merges every look-alike pair also drops some pairs a reader tells apart (F / E, i / 1,
t / f, Λ / A, И / H, ~ / _). It never keeps two classes closer than the threshold.

Normalising the bounding box removes the differences of size and position (o / O, x / X,
Cyrillic small capitals such as к / К: in an isolated, randomly scaled glyph they cannot be told
apart); the minimum over horizontal stretches up to 1.5x removes pairs that differ mainly in
**width**, which a distance between class-mean images misses (O / 0, I / l / |); the median over
fonts keeps pairs that differ in most fonts. :data:`GLYPH_CLASSES` is the committed result of
this rule on matplotlib's fonts (the tests recompute it); its length and the reasons are in
:func:`glyph_metadata`.

Examples
--------
Each example (:func:`render_glyphs`) is the glyph of its class in a random font, with a random
stroke thickening, an affine map (rotation, isotropic scale, shear, translation; the ink box is
centred first), a Gaussian blur and Gaussian pixel noise, rendered at 3x and area-averaged down
to ``size`` x ``size``, white ink on black, clipped to ``[0, 1]``, float64 NCHW ``(n, 1, size,
size)``. Every random choice comes from ``numpy.random.default_rng([seed, split, class])``: the
images of a class do not depend on which other classes are loaded, and the same seed gives the
same bytes on any machine with the same font files, Pillow and FreeType.

Font files
----------
:data:`FONT_SHA256` holds the SHA-256 of each font file as shipped by matplotlib 3.11. If an
installed file differs (another matplotlib version), the class list and the class split stay the
same (they are fixed in this module), but the images are not the reference bytes: a
:class:`GlyphFontWarning` says which files differ, :func:`glyph_metadata` records it, and the
disk cache (its key includes the hashes) is not shared with the reference. A missing font file
raises ``FileNotFoundError``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from functools import lru_cache

import numpy as np

from .._validation import check_int
from .dataset import Dataset

__all__ = ["FONTS", "FONT_SHA256", "CANDIDATES", "GLYPH_CLASSES", "MIN_DISTANCE", "STRETCHES",
           "GlyphFontWarning", "GlyphCacheWarning", "font_paths", "font_hashes", "glyph_metadata", "glyph_templates",
           "glyph_distance", "dedupe", "glyph_class_split", "render_glyphs", "load_glyphs",
           "DEFAULT_SPLIT_FRACTIONS"]

#: The font files (in matplotlib's ``mpl-data/fonts/ttf``); the order is the font index.
FONTS = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSans-BoldOblique.ttf",
    "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf", "STIXGeneralBolIta.ttf",
)

#: SHA-256 of each font file as shipped with matplotlib 3.11 (the reference bytes).
FONT_SHA256: dict = {
    "DejaVuSans.ttf": "3fdf69cabf06049ea70a00b5919340e2ce1e6d02b0cc3c4b44fb6801bd1e0d22",
    "DejaVuSans-Bold.ttf": "b184b89e3c1075f22f6b71575b6fc20d4972b3cfd3b23322ca6fd596dcaef167",
    "DejaVuSans-Oblique.ttf": "ccdf74b350f11fd3dd5774de50e5e6346a1a5da1f5b7d5fb83590665e97a5213",
    "DejaVuSans-BoldOblique.ttf": "6edf0283160186af451cbee71e7b845f2e4cabf264bb992ce668c83c25465e6f",
    "DejaVuSerif.ttf": "107244956e9962b9e96faccdc551825e0ae0898ae13737133e1b921a2fd35ffa",
    "DejaVuSerif-Bold.ttf": "c3753f2ed6bc673f15846dc45addbeb3b9c872f32fb18fd53a21f1bef1ed7676",
    "DejaVuSerif-Italic.ttf": "3e7994fbc54fa10ce3352a42d548fadd7d9cadb69cb1109bc9d960f6dac57f04",
    "DejaVuSerif-BoldItalic.ttf": "d93efec7a9d2e826768d1a2ee95b95870e15e29599a84f3484af1de1cec2e181",
    "DejaVuSansMono.ttf": "602ec86b8948cfcd956482fe64f94c36c867770149ef2f791d4613f443bcecb3",
    "DejaVuSansMono-Bold.ttf": "baada9a5172fe20886251aff0433fc38461912d5daf07287e7bee56620a8da96",
    "DejaVuSansMono-Oblique.ttf": "28052813f7a709fc89f52d192dc995ef4f0fdc5c3d7b73a49d6849b1916d0cd0",
    "DejaVuSansMono-BoldOblique.ttf": "a69081c15c76c827e0a27a5a7f5c74b6135c843499955495ffa8c20d3a98288b",
    "STIXGeneral.ttf": "167378031e2dddc6216d67819c9260e9a06ffc4c478e4e23cb98a6fd44b183c2",
    "STIXGeneralBol.ttf": "e8533dc7083fa346bda1933d60ea4a83b67d0945bceaf1b3541f82b4a0e2c6a0",
    "STIXGeneralItalic.ttf": "6cfcb333d22b7c3c623bdfd40174f14c85c3d6731ca6166c1edc80140eae8527",
    "STIXGeneralBolIta.ttf": "98788fd4ba48dfbb2bd026c0e20a247a8b06c7372879628b7a6bb0d5bb09736c",
}

_LATIN1 = "ßÆæØøÞþÐð¿¡§¶©®£¥¢¤µ±×÷¬«»"
_LATIN_EXT = "ŁłŊŋŒœĦħıȷƒſƛƞ"
_IPA = ("ɐɑɒɓɔɕɖɗɘəɛɜɞɟɠɣɤɥɦɧɨɩɪɫɬɭɮɯɰɱɲɳɴɵɶɷɸɹɺɻɼɽɾɿʀʁʂʃʄʅʆʇʈʉʊʋʌʍʎʏʐʑʒʓʔʕʖʗʘʙʚʛʜʝʞʟ"
        "ʠʡʢʣʤʥʦʧʨ")
_ASCII_SYMBOLS = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_BOX = "─│┌┐└┘├┤┬┴┼═║╔╗╚╝╠╣╦╩╬"

#: Candidate characters, in the order the de-duplication walks them (the first of a look-alike
#: group is kept).
CANDIDATES = (
    "0123456789"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "abcdefghijklmnopqrstuvwxyz"
    "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ"
    "αβγδεζηθικλμνξοπρςστυφχψω"
    "АБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
    "абвгдежзийклмнопрстуфхцчшщъыьэюя"
    + _LATIN1 + _LATIN_EXT + _IPA + _ASCII_SYMBOLS + "№™∂" + _BOX
)

#: The de-duplication threshold on :func:`glyph_distance` (RMS ink difference of normalised
#: glyphs, median over fonts).
MIN_DISTANCE = 0.14
#: Horizontal stretches over which the distance is minimised (width differences up to 1.5x).
STRETCHES = (1.0, 1.25, 1.5, 1 / 1.25, 1 / 1.5)
TEMPLATE_SIZE = 32
TEMPLATE_BOX = 24
TEMPLATE_BLUR = 1.0

#: The class split's default proportions (CIFAR-FS: 64 source, 16 validation, 20 target of 100).
DEFAULT_SPLIT_FRACTIONS = (0.64, 0.16, 0.20)

#: Distinct classes after :func:`dedupe` (committed; ``tests/test_glyphs.py`` recomputes it).
GLYPH_CLASSES: str = (
    "0123456789ACDEGHJKLMNPQRSTUVWXYZabdefgkm"
    "npqruyΓΔΞΣΦΨΩαεζηικλμνπσυφωБДЖЙЛЦЧШЪЫЬЮЯ"
    "вищэßÆæøÞð¿§¶©®£¥¢¤±×÷¬«»Œħɐɑɕɗɘəɞɣɨɮɰɱɲ"
    "ɳɷɻɾʁʂʉʊʍʎʐʑʒʔʕʚʞʣʤʦʨ\"#$%&*,-./:<=>@\\^_`"
    "№™∂┌┐└┘┬┴╔╗╚╝╦╩"
)

# Rendering: glyphs are drawn at _OVERSAMPLE x the output size, then area-averaged down.
_OVERSAMPLE = 3
_EM = 0.9            # em size as a fraction of the output side
_MAX_EXTENT = 0.86   # the ink box's longer side is at most this fraction of the side (before the affine)

_SPLITS = {"train": 0, "test": 1}
_PARTS = ("source", "val", "target", "all")


class GlyphFontWarning(UserWarning):
    """An installed font file differs from the reference (:data:`FONT_SHA256`)."""


# ----------------------------------------------------------------------------------- font files
def font_paths() -> dict:
    """``{file name: path}`` of the :data:`FONTS` in matplotlib's font folder.

    Raises ``FileNotFoundError`` naming any missing file.
    """
    import matplotlib

    folder = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    out = {f: os.path.join(folder, f) for f in FONTS}
    missing = [f for f, p in out.items() if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError(f"glyphs: font file(s) {missing} not found in {folder} "
                                "(the glyphs dataset needs matplotlib's bundled DejaVu and STIX fonts)")
    return out


@lru_cache(maxsize=1)
def font_hashes() -> dict:
    """``{file name: SHA-256 hex digest}`` of the installed :data:`FONTS`."""
    out = {}
    for name, path in font_paths().items():
        with open(path, "rb") as fh:
            out[name] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _fonts_differ() -> list:
    have = font_hashes()
    return sorted(f for f in FONTS if FONT_SHA256.get(f) != have[f])


_WARNED = False


def _check_fonts():
    global _WARNED
    differ = _fonts_differ()
    if differ and not _WARNED:
        _WARNED = True
        warnings.warn(f"glyphs: font file(s) {differ} differ from the reference (FONT_SHA256): the classes "
                      "and the split are unchanged, but the images are not the reference bytes",
                      GlyphFontWarning, stacklevel=3)
    return differ


def glyph_metadata() -> dict:
    """What the dataset is made of: fonts (path, SHA-256, whether it matches the reference),
    Pillow and FreeType versions, the candidate and kept classes and the de-duplication rule."""
    import PIL
    from PIL import features

    have = font_hashes()
    paths = font_paths()
    return {
        "fonts": [{"file": f, "path": paths[f], "sha256": have[f], "reference_sha256": FONT_SHA256.get(f),
                   "matches_reference": FONT_SHA256.get(f) == have[f]} for f in FONTS],
        "fonts_match_reference": not _fonts_differ(),
        "pillow": PIL.__version__, "freetype": features.version("freetype2"),
        "num_candidates": len(CANDIDATES), "num_classes": len(GLYPH_CLASSES),
        "classes": list(GLYPH_CLASSES),
        "rule": {"distance": "median over fonts of min over horizontal stretches of the RMS difference "
                             "of box-normalised, blurred glyph templates",
                 "min_distance": MIN_DISTANCE, "stretches": list(STRETCHES),
                 "template_size": TEMPLATE_SIZE, "template_box": TEMPLATE_BOX,
                 "template_blur": TEMPLATE_BLUR},
    }


# -------------------------------------------------------------------------------- glyph drawing
@lru_cache(maxsize=64)
def _font(index: int, em_px: int):
    from PIL import ImageFont
    return ImageFont.truetype(font_paths()[FONTS[index]], size=em_px)


@lru_cache(maxsize=None)
def _glyph(char: str, font: int, em_px: int, stroke: int):
    """The ink of ``char`` in font ``font`` at ``em_px`` pixels per em, thickened by ``stroke``
    pixels, cropped to its ink box: a PIL 'L' image (or None if the glyph has no ink)."""
    from PIL import Image, ImageDraw

    side = 3 * em_px + 4 * stroke
    img = Image.new("L", (side, side), 0)
    ImageDraw.Draw(img).text((side // 2, 2 * em_px), char, font=_font(font, em_px), fill=255,
                             anchor="ms", stroke_width=stroke, stroke_fill=255)
    box = img.getbbox()
    return None if box is None else img.crop(box)


def glyph_templates(chars, fonts=None) -> np.ndarray:
    """The normalised templates ``N_f(c, s)`` of the de-duplication rule (module docstring).

    Returns
    -------
    ndarray, shape (len(fonts), len(STRETCHES), len(chars), TEMPLATE_SIZE ** 2)
    """
    from PIL import Image, ImageFilter

    fonts = range(len(FONTS)) if fonts is None else fonts
    em_px = 4 * TEMPLATE_SIZE
    out = np.zeros((len(fonts), len(STRETCHES), len(chars), TEMPLATE_SIZE ** 2))
    for fi, f in enumerate(fonts):
        for ci, ch in enumerate(chars):
            g = _glyph(ch, f, em_px, 0)
            if g is None:
                raise ValueError(f"glyphs: character {ch!r} has no ink in font {FONTS[f]}")
            w, h = g.size
            for si, s in enumerate(STRETCHES):
                k = TEMPLATE_BOX / max(w * s, h)
                nw, nh = max(1, round(w * s * k)), max(1, round(h * k))
                small = g.resize((nw, nh), Image.BOX)
                canvas = Image.new("L", (TEMPLATE_SIZE, TEMPLATE_SIZE), 0)
                canvas.paste(small, ((TEMPLATE_SIZE - nw) // 2, (TEMPLATE_SIZE - nh) // 2))
                canvas = canvas.filter(ImageFilter.GaussianBlur(TEMPLATE_BLUR))
                out[fi, si, ci] = np.asarray(canvas, dtype=np.float64).ravel() / 255.0
    return out


def glyph_distance(chars, templates=None) -> np.ndarray:
    """The de-duplication distance ``d(a, b)`` of every pair of ``chars`` (module docstring):
    median over fonts of ``min_s min(rms(N(a,1) - N(b,s)), rms(N(b,1) - N(a,s)))``.

    Returns
    -------
    ndarray, shape (n, n)
        Symmetric, zero diagonal.
    """
    chars = list(chars)
    T = glyph_templates(chars) if templates is None else templates
    nf, ns, n, d = T.shape
    per_font = np.empty((nf, n, n))
    for f in range(nf):
        base = T[f, 0]
        sq0 = np.sum(base * base, axis=1)
        best = np.full((n, n), np.inf)
        for s in range(ns):
            other = T[f, s]
            sq = np.sum(other * other, axis=1)
            d2 = np.maximum(sq0[:, None] + sq[None, :] - 2.0 * base @ other.T, 0.0) / d
            best = np.minimum(best, np.minimum(d2, d2.T))
        per_font[f] = np.sqrt(best)
    out = np.median(per_font, axis=0)
    np.fill_diagonal(out, 0.0)
    return out


def dedupe(chars=CANDIDATES, min_distance: float = MIN_DISTANCE, distances=None):
    """Walk ``chars`` in order and keep each one whose :func:`glyph_distance` to every character
    kept before it is at least ``min_distance``.

    Returns
    -------
    kept : str
        The kept characters, in order.
    dropped : list of (char, nearest kept char, distance)
    """
    chars = list(chars)
    D = glyph_distance(chars) if distances is None else distances
    kept, dropped = [], []
    for i, ch in enumerate(chars):
        if kept:
            j = min(kept, key=lambda k: D[i, k])
            if D[i, j] < min_distance:
                dropped.append((ch, chars[j], float(D[i, j])))
                continue
        kept.append(i)
    return "".join(chars[i] for i in kept), dropped


# -------------------------------------------------------------------------------------- classes
def class_name(char: str) -> str:
    """A class name: the code point and the character, e.g. ``"U+0041 A"``."""
    return f"U+{ord(char):04X} {char}"


def glyph_class_split(split=None, seed: int = 0) -> dict:
    """The glyphs' class split: ``{"source", "val", "target": list of class indices}``.

    One permutation of the ``K = len(GLYPH_CLASSES)`` classes (``seed``) gives: source = its
    first ``n_source``, validation = the next ``n_val``, target = its **last** ``n_target`` (so
    the target classes stay the same when only ``n_source`` changes, as in a source-count
    ablation). ``split = (n_source, n_val, n_target)``; the default is CIFAR-FS's proportions
    64/16/20 of ``K`` (rounded; target takes the remainder).
    """
    K = len(GLYPH_CLASSES)
    seed = check_int(seed, "seed", minimum=0)
    if split is None:
        ns, nv = round(DEFAULT_SPLIT_FRACTIONS[0] * K), round(DEFAULT_SPLIT_FRACTIONS[1] * K)
        split = (ns, nv, K - ns - nv)
    if isinstance(split, (str, bytes)) or not hasattr(split, "__len__") or len(split) != 3:
        raise ValueError(f"split must be (n_source, n_val, n_target), got {split!r}")
    ns, nv, nt = (check_int(v, f"split[{i}]", minimum=0) for i, v in enumerate(split))
    if ns < 1 or nt < 1:
        raise ValueError(f"split needs at least one source and one target class, got {tuple(split)}")
    if ns + nv + nt > K:
        raise ValueError(f"split {tuple(split)} asks for {ns + nv + nt} classes; the glyphs have {K}")
    perm = np.random.default_rng([seed, 7071]).permutation(K)
    return {"source": sorted(perm[:ns].tolist()), "val": sorted(perm[ns:ns + nv].tolist()),
            "target": sorted(perm[K - nt:].tolist())}


# ------------------------------------------------------------------------------------ rendering
def _params(rng, n: int) -> dict:
    """Augmentation parameters of ``n`` examples (one vectorised draw per parameter)."""
    return {
        "font": rng.integers(0, len(FONTS), n),
        "stroke": rng.integers(0, 3, n),                     # thickening at 3x, in pixels
        "angle": rng.uniform(-15.0, 15.0, n) * np.pi / 180,  # rotation (radians)
        "scale": rng.uniform(0.7, 1.0, n),                   # isotropic
        "shear": rng.uniform(-0.25, 0.25, n),                # horizontal shear
        "shift": rng.uniform(-0.07, 0.07, (n, 2)),           # translation, fraction of the side
        "blur": rng.uniform(0.0, 0.8, n),                    # Gaussian sigma, output pixels
        "noise": rng.uniform(0.0, 0.06, n),                  # pixel noise sigma
    }


def render_glyphs(chars, n_per_class: int, size: int = 28, seed: int = 0, split: str = "train"):
    """Render ``n_per_class`` augmented examples of each character of ``chars``.

    Example ``i`` of character ``c``: its glyph in a random font, drawn at an em size of
    ``0.9 * size`` (natural size: a capital is about 0.65 ``size`` tall) and thickened by a random
    stroke, is shrunk if needed so that its ink box's longer side is at most ``0.86 * size``,
    then mapped by one affine map (ink box centred, isotropic scale U(0.7, 1), shear U(-0.25,
    0.25), rotation U(-15, 15) degrees, shift U(-0.07, 0.07) ``size``), drawn at 3x and
    area-averaged to ``size`` x ``size``, blurred (Gaussian sigma U(0, 0.8) px) and given
    Gaussian noise (sigma U(0, 0.06)); then clipped to ``[0, 1]``. The parameters come from
    ``default_rng([seed, split, code point of c])`` (:func:`_params`).

    Returns
    -------
    ndarray, shape (len(chars) * n_per_class, 1, size, size), float64 in [0, 1]
        Class-major (the examples of ``chars[0]`` first).
    """
    from PIL import Image, ImageFilter

    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    size = check_int(size, "size", minimum=8)
    seed = check_int(seed, "seed", minimum=0)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {tuple(_SPLITS)}, got {split!r}")
    big = size * _OVERSAMPLE
    em_px = round(_EM * big)
    out = np.empty((len(chars) * n_per_class, 1, size, size))
    for ci, ch in enumerate(chars):
        rng = np.random.default_rng([seed, _SPLITS[split], ord(ch)])
        p = _params(rng, n_per_class)
        noise = rng.standard_normal((n_per_class, size, size))
        for i in range(n_per_class):
            g = _glyph(ch, int(p["font"][i]), em_px, int(p["stroke"][i]))
            w, h = g.size
            # natural size (em-relative), capped so that the ink box fits
            k = p["scale"][i] * min(1.0, _MAX_EXTENT * big / max(w, h))
            a, sh = p["angle"][i], p["shear"][i]
            c, s = np.cos(a), np.sin(a)
            # forward map A = R(a) @ [[1, sh], [0, 1]] * k; PIL wants the inverse (output -> source)
            A = k * np.array([[c, -s], [s, c]]) @ np.array([[1.0, sh], [0.0, 1.0]])
            Ai = np.linalg.inv(A)
            cx, cy = big / 2 + p["shift"][i, 0] * big, big / 2 + p["shift"][i, 1] * big
            off = np.array([w / 2, h / 2]) - Ai @ np.array([cx, cy])
            img = g.transform((big, big), Image.AFFINE, (Ai[0, 0], Ai[0, 1], off[0], Ai[1, 0], Ai[1, 1], off[1]),
                              resample=Image.BILINEAR)
            img = img.resize((size, size), Image.BOX)
            if p["blur"][i] > 0.05:
                img = img.filter(ImageFilter.GaussianBlur(float(p["blur"][i])))
            x = np.asarray(img, dtype=np.float64) / 255.0 + p["noise"][i] * noise[i]
            out[ci * n_per_class + i, 0] = np.clip(x, 0.0, 1.0)
    return out


# ---------------------------------------------------------------------------------------- loader
class GlyphCacheWarning(UserWarning):
    """A glyph cache file was unreadable or did not match its checksum, and is rendered again."""


def _write_cache(path, X) -> None:
    """``path`` (the ``.npy`` of ``X``) and ``path.sha256`` (the SHA-256 of its bytes), each
    written atomically; a cache whose checksum file is missing or differs is not used."""
    import io

    from ..nn import atomic_write
    buf = io.BytesIO()
    np.save(buf, X, allow_pickle=False)
    data = buf.getvalue()
    atomic_write(path, lambda fh: fh.write(data))
    atomic_write(path + ".sha256", lambda fh: fh.write(hashlib.sha256(data).hexdigest().encode()))


def _read_cache(path, shape):
    """The cached images at ``path``, or ``None`` (with a :class:`GlyphCacheWarning` naming the
    file and why) when it is unreadable, does not match the checksum recorded beside it, or is
    not float64 of ``shape``; never unpickles."""
    import io
    reason = None
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        with open(path + ".sha256", "rb") as fh:
            recorded = fh.read().decode("ascii", "replace").strip()
    except FileNotFoundError:
        reason = "no checksum recorded beside it"
    except OSError as err:
        reason = f"unreadable: {err.strerror or err}"
    if reason is None and hashlib.sha256(data).hexdigest() != recorded:
        reason = "its SHA-256 differs from the one recorded (truncated, damaged or changed)"
    X = None
    if reason is None:
        try:
            X = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            reason = ("it holds pickled objects" if "pickle" in str(err)
                      else f"not a readable .npy array ({err})")
    if reason is None and (X.dtype != np.float64 or X.shape != shape):
        reason = f"it holds {X.dtype} {X.shape}, not float64 {shape}"
    if reason is not None:
        warnings.warn(f"glyph cache {path} is not used ({reason}); rendering it again",
                      GlyphCacheWarning, stacklevel=3)
        return None
    return X


def _cache_key(**kw) -> str:
    blob = json.dumps({**kw, "fonts": font_hashes(), "classes": GLYPH_CLASSES}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def load_glyphs(split: str = "train", part: str = "all", n_per_class: int = 100, size: int = 28,
                seed: int = 0, class_split=None, class_seed: int = 0, cache_dir=None) -> Dataset:
    """The glyphs dataset (module docstring): ``n_per_class`` rendered examples of each class.

    Parameters
    ----------
    split : {"train", "test"}
        Independent draws of the same classes (random streams ``[seed, 0|1, class]``).
    part : {"all", "source", "val", "target"}
        Which classes: all :data:`GLYPH_CLASSES`, or one part of :func:`glyph_class_split`
        (``class_split``, ``class_seed``). Labels are ``0..k-1`` in the part's class order.
    n_per_class : int
        Examples per class.
    size : int
        Image side (default 28): ``X`` has shape ``(n, 1, size, size)``, float64 in ``[0, 1]``.
    seed : int
        Seed of the examples.
    class_split : (n_source, n_val, n_target), optional
        Default: CIFAR-FS proportions 64/16/20 of all classes.
    class_seed : int
        Seed of the class split.
    cache_dir : path, optional
        If given, the images are read from / written to ``cache_dir/glyphs-<key>.npy`` (written
        atomically; the key hashes every argument, the font files and the class list; read with
        ``allow_pickle=False``), with the SHA-256 of its bytes in ``glyphs-<key>.npy.sha256``.
        A cache file that is unreadable, does not match its checksum, or has the wrong shape is
        rendered again and rewritten, with a :class:`GlyphCacheWarning` naming it.

    Returns
    -------
    Dataset
        Named ``glyphs-<part>-<split>``; class names like ``"U+0041 A"``.
    """
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test' for 'glyphs', got {split!r}")
    if part not in _PARTS:
        raise ValueError(f"part must be one of {_PARTS}, got {part!r}")
    n_per_class = check_int(n_per_class, "n_per_class", minimum=1)
    size = check_int(size, "size", minimum=8)
    seed = check_int(seed, "seed", minimum=0)
    _check_fonts()
    if part == "all":
        idx = list(range(len(GLYPH_CLASSES)))
    else:
        idx = glyph_class_split(class_split, class_seed)[part]
    chars = [GLYPH_CLASSES[i] for i in idx]
    X = None
    path = None
    if cache_dir is not None:
        key = _cache_key(chars=chars, n_per_class=n_per_class, size=size, seed=seed, split=split)
        path = os.path.join(os.fspath(cache_dir), f"glyphs-{key}.npy")
        if os.path.exists(path):
            X = _read_cache(path, (len(chars) * n_per_class, 1, size, size))
    if X is None:
        X = render_glyphs(chars, n_per_class, size=size, seed=seed, split=split)
        if path is not None:
            _write_cache(path, X)
    y = np.repeat(np.arange(len(chars), dtype=np.int64), n_per_class)
    return Dataset(X, y, tuple(class_name(c) for c in chars), f"glyphs-{part}-{split}")
