"""Tests of emotion_cnn.splits: EmoBox folds, actor and random protocols, limits, tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emotion_cnn.config import EMOTIONS, SplitConfig
from emotion_cnn.splits import (
    EMOBOX_TEST_ACTORS,
    EMOBOX_VAL_ACTORS,
    LEAKY_WARNING,
    SPLITS,
    actor_roles,
    assign_splits,
    limit_actors,
    split_name,
    split_table,
)

ALL_ACTORS = set(range(1, 25))


def ravdess_meta(actors=range(1, 25)) -> pd.DataFrame:
    """One row per clip of the real RAVDESS speech layout (60 per actor)."""
    rows = []
    for actor in actors:
        for emotion in range(1, 9):
            for intensity in ((1,) if emotion == 1 else (1, 2)):
                for statement in (1, 2):
                    for rep in (1, 2):
                        rows.append({"actor": actor, "emotion": EMOTIONS[emotion - 1],
                                     "intensity": intensity, "statement": statement,
                                     "repetition": rep})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- emobox folds


@pytest.mark.parametrize("fold", range(1, 7))
def test_emobox_fold_roles(fold):
    roles = actor_roles(SplitConfig(protocol="emobox", fold=fold))
    test, val = set(roles["test"]), set(roles["val"])
    train = ALL_ACTORS - test - val
    assert len(test) == 4 and len(val) == 4 and len(train) == 16
    assert not test & val
    assert test | val | train == ALL_ACTORS
    assert test <= ALL_ACTORS and val <= ALL_ACTORS
    assert sum(a % 2 for a in val) == 2  # 2 odd (male) + 2 even (female)


def test_each_actor_validates_exactly_one_fold_and_tests_exactly_one():
    val_counts = {a: 0 for a in ALL_ACTORS}
    test_counts = {a: 0 for a in ALL_ACTORS}
    for fold in range(1, 7):
        for a in EMOBOX_VAL_ACTORS[fold]:
            val_counts[a] += 1
        for a in EMOBOX_TEST_ACTORS[fold]:
            test_counts[a] += 1
    assert set(val_counts.values()) == {1}
    assert set(test_counts.values()) == {1}
    assert sorted(EMOBOX_TEST_ACTORS) == sorted(EMOBOX_VAL_ACTORS) == [1, 2, 3, 4, 5, 6]


@pytest.mark.real_data
def test_emobox_test_actors_match_the_benchmark_file(real_data_dir):
    folds = json.loads((real_data_dir / "folds_emobox.json").read_text())["test_actors"]
    assert {int(k): v for k, v in folds.items()} == EMOBOX_TEST_ACTORS


@pytest.mark.parametrize("fold", [0, 7, -1])
def test_emobox_bad_fold_raises(fold):
    with pytest.raises(ValueError, match="1..6"):
        actor_roles(SplitConfig(protocol="emobox", fold=fold))


@pytest.mark.parametrize("fold", range(1, 7))
def test_assign_splits_emobox_keeps_speakers_apart(fold):
    meta = ravdess_meta()
    split = assign_splits(meta, SplitConfig(protocol="emobox", fold=fold), seed=0)
    assert split.name == "split"
    assert split.index.equals(meta.index)
    assert set(split) == set(SPLITS)
    per_actor = meta.groupby("actor")["actor"].count()
    assert set(per_actor) == {60}
    roles = meta.assign(split=split.to_numpy()).groupby("actor")["split"].nunique()
    assert set(roles) == {1}  # no actor in two splits
    actors = {s: set(meta.loc[split == s, "actor"]) for s in SPLITS}
    assert actors["test"] == set(EMOBOX_TEST_ACTORS[fold])
    assert actors["val"] == set(EMOBOX_VAL_ACTORS[fold])
    assert len(actors["train"]) == 16
    assert (split == "test").sum() == 240 and (split == "val").sum() == 240
    assert (split == "train").sum() == 960


def test_assign_splits_accepts_string_or_numpy_actor_ids():
    meta = ravdess_meta(actors=[1, 3, 5]).astype({"actor": np.int16})
    split = assign_splits(meta, SplitConfig(protocol="emobox", fold=1), seed=0)
    assert set(split[meta["actor"] == 1]) == {"test"}
    assert set(split[meta["actor"] == 3]) == {"val"}
    assert set(split[meta["actor"] == 5]) == {"train"}


# --------------------------------------------------------------------------- actors protocol


def test_actors_protocol():
    cfg = SplitConfig(protocol="actors", test_actors=[1, 2], val_actors=[3])
    assert actor_roles(cfg) == {"test": [1, 2], "val": [3]}
    meta = ravdess_meta(actors=range(1, 7))
    split = assign_splits(meta, cfg, seed=0)
    assert set(meta.loc[split == "test", "actor"]) == {1, 2}
    assert set(meta.loc[split == "val", "actor"]) == {3}
    assert set(meta.loc[split == "train", "actor"]) == {4, 5, 6}


def test_actors_protocol_overlap_raises():
    cfg = SplitConfig(protocol="actors", test_actors=[1, 2], val_actors=[2, 3])
    with pytest.raises(ValueError, match=r"\[2\]"):
        actor_roles(cfg)
    with pytest.raises(ValueError):
        assign_splits(ravdess_meta(actors=[1, 2, 3]), cfg, seed=0)


@pytest.mark.parametrize("test, val", [([], [2]), ([1], []), ([], [])])
def test_actors_protocol_empty_lists_raise(test, val):
    with pytest.raises(ValueError, match="test-actors"):
        actor_roles(SplitConfig(protocol="actors", test_actors=test, val_actors=val))


def test_unknown_protocol_raises():
    with pytest.raises(ValueError, match="no actor roles"):
        actor_roles(SplitConfig(protocol="nope"))
    with pytest.raises(ValueError, match="unknown protocol"):
        split_name(SplitConfig(protocol="nope"), seed=1)


# --------------------------------------------------------------------------- random protocol


def test_random_split_is_stratified():
    meta = ravdess_meta(actors=range(1, 7))  # 360 clips: 24 neutral, 48 each other emotion
    cfg = SplitConfig(protocol="random")
    split = assign_splits(meta, cfg, seed=42)
    assert split.index.equals(meta.index)
    counts = pd.crosstab(meta["emotion"], split)
    for emotion, row in counts.iterrows():
        total = row.sum()
        assert abs(row["test"] - total * cfg.test_fraction) <= 1, emotion
        assert abs(row["val"] - total * cfg.val_fraction) <= 1, emotion
        assert abs(row["train"] - total * (1 - cfg.test_fraction - cfg.val_fraction)) <= 1, emotion
    assert split.value_counts().to_dict() == {"train": 240, "val": 60, "test": 60}


def test_random_split_other_fractions():
    meta = ravdess_meta(actors=range(1, 5))  # 240 clips
    cfg = SplitConfig(protocol="random", test_fraction=0.25, val_fraction=0.25)
    split = assign_splits(meta, cfg, seed=3)
    counts = pd.crosstab(meta["emotion"], split)
    for _, row in counts.iterrows():
        assert abs(row["test"] - row.sum() / 4) <= 1
        assert abs(row["val"] - row.sum() / 4) <= 1
    assert (split == "test").sum() == 60 and (split == "val").sum() == 60


def test_random_split_reproducible_and_seed_dependent():
    meta = ravdess_meta(actors=range(1, 7))
    cfg = SplitConfig(protocol="random")
    a = assign_splits(meta, cfg, seed=42)
    b = assign_splits(meta, cfg, seed=42)
    c = assign_splits(meta, cfg, seed=43)
    pd.testing.assert_series_equal(a, b)
    assert (a != c).sum() > 20


def test_random_split_is_leaky():
    meta = ravdess_meta(actors=range(1, 7))
    split = assign_splits(meta, SplitConfig(protocol="random"), seed=42)
    per_actor = meta.assign(split=split.to_numpy()).groupby("actor")["split"].nunique()
    assert (per_actor > 1).all()  # every actor in several splits
    test_actors = set(meta.loc[split == "test", "actor"])
    train_actors = set(meta.loc[split == "train", "actor"])
    assert test_actors & train_actors == test_actors
    assert "leaky" in LEAKY_WARNING


# --------------------------------------------------------------------------- limit_actors


@pytest.mark.parametrize("fold", range(1, 7))
@pytest.mark.parametrize("n", [3, 4, 5, 10])
def test_limit_actors_emobox_keeps_every_split(fold, n):
    cfg = SplitConfig(protocol="emobox", fold=fold)
    kept = limit_actors(list(range(1, 25)), cfg, n)
    assert len(kept) == n
    assert kept == sorted(kept)
    assert set(kept) & set(EMOBOX_TEST_ACTORS[fold])
    assert set(kept) & set(EMOBOX_VAL_ACTORS[fold])
    assert set(kept) - set(EMOBOX_TEST_ACTORS[fold]) - set(EMOBOX_VAL_ACTORS[fold])


def test_limit_actors_emobox_fold1_four_actors():
    # round robin: test 1, val 3, train 2, then test 11
    assert limit_actors(list(range(1, 25)), SplitConfig(protocol="emobox", fold=1), 4) == [1, 2, 3, 11]


def test_limit_actors_with_only_some_actors_present():
    cfg = SplitConfig(protocol="emobox", fold=1)  # test 1, 11, 20, 21; val 3, 9, 4, 16
    assert limit_actors([2, 4, 5, 6, 1, 1, 3], cfg, 3) == [1, 2, 3]


def test_limit_actors_random_takes_lowest_ids():
    cfg = SplitConfig(protocol="random")
    assert limit_actors([9, 3, 7, 1, 5, 3], cfg, 3) == [1, 3, 5]


@pytest.mark.parametrize("n", [0, -1, 24, 30])
def test_limit_actors_no_limit_returns_all_sorted(n):
    actors = list(range(24, 0, -1)) + [5]
    assert limit_actors(actors, SplitConfig(protocol="emobox"), n) == list(range(1, 25))


def test_limit_actors_actors_protocol():
    cfg = SplitConfig(protocol="actors", test_actors=[5, 6], val_actors=[7])
    assert limit_actors(list(range(1, 11)), cfg, 3) == [1, 5, 7]
    assert limit_actors(list(range(1, 11)), cfg, 4) == [1, 5, 6, 7]


# --------------------------------------------------------------------------- names and tables


def test_split_name_values():
    assert split_name(SplitConfig(protocol="emobox", fold=3), seed=1) == "emobox-fold3"
    assert split_name(SplitConfig(protocol="emobox", fold=1), seed=1,
                      keep_duplicates=True) == "emobox-fold1-with-duplicates"
    assert split_name(SplitConfig(protocol="actors", test_actors=[1, 12], val_actors=[2]),
                      seed=1) == "actors-test1_12"
    assert split_name(SplitConfig(protocol="random"), seed=42) == "random-seed42"
    assert split_name(SplitConfig(protocol="random"), seed=7,
                      keep_duplicates=True) == "random-seed7-with-duplicates"


def test_split_table():
    meta = ravdess_meta(actors=[1, 3, 4, 5])
    meta["split"] = assign_splits(meta, SplitConfig(protocol="emobox", fold=1), seed=0).to_numpy()
    table = split_table(meta)
    assert list(table.columns) == ["train", "val", "test", "total"]
    assert table.index[-2:].tolist() == ["total", "actors"]
    assert set(table.index[:-2]) == set(EMOTIONS)
    assert table.loc["actors", "test"] == "1"
    assert table.loc["actors", "val"] == "3, 4"
    assert table.loc["actors", "train"] == "5"
    assert table.loc["actors", "total"] == ""
    assert int(table.loc["total", "total"]) == 240
    assert int(table.loc["total", "train"]) == 60
    assert int(table.loc["total", "val"]) == 120
    assert int(table.loc["neutral", "test"]) == 4
    assert int(table.loc["angry", "total"]) == 32


def test_split_table_without_a_split():
    meta = ravdess_meta(actors=[1, 2])
    meta["split"] = np.where(meta["actor"] == 1, "train", "test")
    table = split_table(meta)
    assert list(table.columns) == ["train", "test", "total"]
    assert table.loc["actors", "train"] == "1"
    assert int(table.loc["total", "total"]) == 120


def test_split_table_uses_no_deprecated_pandas_behaviour():
    import warnings

    meta = ravdess_meta(actors=[1, 2])
    meta["split"] = np.where(meta["actor"] == 1, "train", "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        table = split_table(meta)
    assert table.loc["actors", "train"] == "1"
