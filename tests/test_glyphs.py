"""gcref.data.glyphs: the offline many-class character dataset (classes, rule, determinism, split)."""

from __future__ import annotations

import os
import re
import warnings

import numpy as np
import pytest

from gcref.data import glyphs as G
from gcref.data import load_dataset


def test_class_count_and_names():
    assert len(G.GLYPH_CLASSES) == 175
    assert len(set(G.GLYPH_CLASSES)) == len(G.GLYPH_CLASSES)
    assert set(G.GLYPH_CLASSES) <= set(G.CANDIDATES)
    assert len(G.CANDIDATES) == 357 and len(set(G.CANDIDATES)) == 357
    ds = G.load_glyphs(n_per_class=1)
    assert ds.num_classes == 175 and ds.classes[10] == "U+0041 A"


def test_fonts_are_the_reference_files():
    meta = G.glyph_metadata()
    assert meta["fonts_match_reference"], [f for f in meta["fonts"] if not f["matches_reference"]]
    assert len(meta["fonts"]) == 16 and meta["num_classes"] == 175
    assert meta["rule"]["min_distance"] == G.MIN_DISTANCE


@pytest.mark.slow
def test_kept_classes_are_at_least_the_rule_apart():
    """No two classes closer than MIN_DISTANCE (the rule's guarantee, recomputed; ~5 s of CPU,
    marked slow because it is much longer on a loaded machine)."""
    D = G.glyph_distance(G.GLYPH_CLASSES)
    off = D[~np.eye(len(D), dtype=bool)]
    assert off.min() >= G.MIN_DISTANCE
    assert np.allclose(D, D.T)


def test_look_alikes_fall_under_the_rule():
    """Cross-script twins, case pairs that differ only in size, and pairs that differ mainly in
    width (O / 0, I / |) are closer than MIN_DISTANCE; clearly different letters are not."""
    chars = "AΑАO0I|oOxXKКHX"
    D = G.glyph_distance(chars)
    d = {(a, b): D[chars.index(a), chars.index(b)] for a in chars for b in chars}
    for a, b in [("A", "Α"), ("A", "А"), ("O", "0"), ("I", "|"), ("o", "O"), ("x", "X"), ("K", "К")]:
        assert d[a, b] < G.MIN_DISTANCE, (a, b, d[a, b])
    for a, b in [("A", "O"), ("H", "X"), ("I", "O"), ("K", "O")]:
        assert d[a, b] > 1.5 * G.MIN_DISTANCE, (a, b, d[a, b])
    assert G.dedupe("AΑ0OIK|", distances=G.glyph_distance("AΑ0OIK|"))[0] == "A0IK"


@pytest.mark.slow
def test_rule_gives_the_committed_classes():
    kept, dropped = G.dedupe()
    assert kept == G.GLYPH_CLASSES
    assert len(dropped) == len(G.CANDIDATES) - len(kept)


def test_shapes_ranges_and_labels():
    ds = G.load_glyphs("train", "target", n_per_class=3, class_split=(64, 16, 20))
    assert ds.X.shape == (60, 1, 28, 28) and ds.X.dtype == np.float64
    assert ds.X.min() >= 0.0 and ds.X.max() <= 1.0 and ds.X.max() > 0.9
    assert np.array_equal(ds.y, np.repeat(np.arange(20), 3))
    assert ds.name == "glyphs-target-train"
    small = G.load_glyphs(part="val", n_per_class=2, size=16, class_split=(64, 16, 20))
    assert small.X.shape == (32, 1, 16, 16)
    # every image has ink, centred: more ink in the middle half than in the border
    ink = ds.X[:, 0]
    assert np.all(ink.sum(axis=(1, 2)) > 3)
    assert np.mean(ink[:, 7:21, 7:21]) > np.mean(ink)


def test_deterministic_and_independent_of_the_other_classes():
    a = G.load_glyphs("train", "source", n_per_class=4, seed=3, class_split=(8, 2, 4))
    b = G.load_glyphs("train", "source", n_per_class=4, seed=3, class_split=(8, 2, 4))
    assert a.X.tobytes() == b.X.tobytes()
    c = G.load_glyphs("train", "source", n_per_class=4, seed=4, class_split=(8, 2, 4))
    assert not np.array_equal(a.X, c.X)
    test = G.load_glyphs("test", "source", n_per_class=4, seed=3, class_split=(8, 2, 4))
    assert not np.array_equal(a.X, test.X)
    # the images of a class do not depend on which other classes are loaded
    allc = G.load_glyphs("train", "all", n_per_class=4, seed=3)
    first = G.glyph_class_split((8, 2, 4))["source"][0]
    assert np.array_equal(a.X[:4], allc.X[first * 4:first * 4 + 4])
    # and the rendering itself: same arguments, same bytes
    x1 = G.render_glyphs("Aß", 3, seed=1)
    assert x1.tobytes() == G.render_glyphs("Aß", 3, seed=1).tobytes()


def test_class_split_disjoint_and_sizes():
    s = G.glyph_class_split()
    assert [len(s[k]) for k in ("source", "val", "target")] == [112, 28, 35]
    parts = [set(s[k]) for k in ("source", "val", "target")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set().union(*parts) == set(range(175))
    s100 = G.glyph_class_split((64, 16, 20))
    assert [len(s100[k]) for k in ("source", "val", "target")] == [64, 16, 20]
    assert not set(s100["source"]) & set(s100["target"])
    # the ablation's nesting: fewer source classes, same target classes
    s8 = G.glyph_class_split((8, 16, 20))
    assert s8["target"] == s100["target"] and set(s8["source"]) <= set(s100["source"])
    assert G.glyph_class_split(seed=1)["source"] != s["source"]
    with pytest.raises(ValueError, match="asks for 200 classes"):
        G.glyph_class_split((100, 50, 50))
    with pytest.raises(ValueError, match="split must be"):
        G.glyph_class_split((64, 16))
    with pytest.raises(ValueError, match="at least one source"):
        G.glyph_class_split((0, 16, 20))


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        G.load_glyphs("all")
    with pytest.raises(ValueError, match="part must be one of"):
        G.load_glyphs(part="train")
    with pytest.raises((ValueError, TypeError), match="n_per_class"):
        G.load_glyphs(n_per_class=0)
    with pytest.raises((ValueError, TypeError), match="size"):
        G.load_glyphs(size=4)


def test_disk_cache_is_atomic_and_reused(tmp_path):
    a = G.load_glyphs(part="target", n_per_class=2, class_split=(8, 2, 4), cache_dir=tmp_path)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0].startswith("glyphs-") and files[0].endswith(".npy")
    assert files[1] == files[0] + ".sha256"               # the checksum recorded beside it
    import hashlib
    assert (tmp_path / files[1]).read_text() == hashlib.sha256((tmp_path / files[0]).read_bytes()).hexdigest()
    with warnings.catch_warnings():
        warnings.simplefilter("error", G.GlyphCacheWarning)
        b = G.load_glyphs(part="target", n_per_class=2, class_split=(8, 2, 4), cache_dir=tmp_path)
    assert a.X.tobytes() == b.X.tobytes()
    assert np.load(tmp_path / files[0], allow_pickle=False).tobytes() == a.X.tobytes()


def test_differing_font_files_are_reported(monkeypatch):
    monkeypatch.setitem(G.FONT_SHA256, "DejaVuSans.ttf", "0" * 64)
    monkeypatch.setattr(G, "_WARNED", False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        G.load_glyphs(part="target", n_per_class=1, class_split=(8, 2, 4))
    assert any(issubclass(w.category, G.GlyphFontWarning) and "DejaVuSans.ttf" in str(w.message) for w in rec)
    assert not G.glyph_metadata()["fonts_match_reference"]


def test_load_dataset_and_lab_split():
    ds = load_dataset("glyphs", split="test", part="source", n_per_class=2, class_split=(8, 2, 4))
    assert ds.num_classes == 8 and ds.n == 16
    from gcref.lab.config import load_run_data, validate_config
    data = load_run_data({"dataset": "glyphs", "dataset_options": {"class_split": [6, 2, 4], "n_per_class": 21,
                                                                    "test_per_class": 3}})
    assert data.train.num_classes == 6 and data.train.n == 126 and data.test.n == 18
    assert data.target.num_classes == 4 and data.target.n == 84
    assert not set(data.train.classes) & set(data.target.classes)
    with pytest.raises(ValueError, match="glyphs has its own class split"):
        validate_config({"dataset": "glyphs", "num_source": 5})


def test_transfer_command_defaults_to_glyphs(tmp_path):
    """``gcref transfer`` teaches on glyphs by default (its own 112 / 28 / 35 class split)."""
    import json

    from typer.testing import CliRunner

    from gcref.cli import app
    out = tmp_path / "transfer"
    res = CliRunner().invoke(app, ["transfer", "--max-per-class", "4", "--shots", "1", "--queries", "2",
                                   "--episodes", "2", "--steps", "2", "--eval-every", "2", "--eval-size", "8",
                                   "--hidden", "8,4", "--batch-size", "8", "--param", "lr=0.05",
                                   "--seeds", "0", "--until-train-acc", "0", "--parallel-backend", "sequential", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    run = summary["runs"][0]
    assert run["status"] == "completed" and run["final"]["few_shot_accuracy"] is not None
    config = json.loads(next(out.glob("*/config.json")).read_text())
    assert config["dataset"] == "glyphs-source-train"
    res = CliRunner().invoke(app, ["train", "--dataset", "glyphs", "--num-source", "5", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "glyphs has its own class split" in res.output


@pytest.mark.parametrize("how", ["empty", "truncated", "pickle", "tampered", "no checksum"])
def test_damaged_glyph_cache_is_rendered_again_and_said(tmp_path, how):
    kw = dict(part="target", n_per_class=2, class_split=(8, 2, 4), cache_dir=tmp_path)
    ref = G.load_glyphs(**kw)
    (cache,) = tmp_path.glob("glyphs-*.npy")
    good = cache.read_bytes()
    if how == "empty":
        cache.write_bytes(b"")
    elif how == "truncated":
        cache.write_bytes(good[:len(good) // 2])
    elif how == "pickle":
        np.save(cache, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    elif how == "tampered":                     # right shape and dtype, other numbers
        X = np.load(cache)
        X[0, 0, 0, 0] += 0.5
        np.save(cache, X)
    else:
        os.unlink(str(cache) + ".sha256")
    with pytest.warns(G.GlyphCacheWarning, match=rf"glyph cache {re.escape(str(cache))} is not used .*rendering it again"):
        again = G.load_glyphs(**kw)
    assert again.X.tobytes() == ref.X.tobytes()
    assert cache.read_bytes() == good                     # rewritten, with its checksum
    with warnings.catch_warnings():
        warnings.simplefilter("error", G.GlyphCacheWarning)
        assert G.load_glyphs(**kw).X.tobytes() == ref.X.tobytes()
