"""Which clip goes to train, validation and test.

Protocols:

``emobox`` (default)
    The published speaker-independent 6-fold protocol of the EmoBox benchmark (Ma et al.,
    Interspeech 2024): each fold tests on 4 actors. Validation actors are a fixed,
    gender-balanced set of 2 male + 2 female actors from the other 20
    (:data:`EMOBOX_VAL_ACTORS`, each actor validates exactly one fold); the other 16 train.
``actors``
    User-given test and validation actors; every other actor trains.
``random``
    File-level stratified random split, as in the project this grew from. The same speakers
    (and, in the doubled Kaggle copy, the same recordings) land in train and test, so its
    scores are optimistic: the output says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from emotion_cnn.config import SplitConfig

SPLITS = ("train", "val", "test")

# A fact of the benchmark, copied from its fold file (shared/ravdess/folds_emobox.json).
EMOBOX_TEST_ACTORS: dict[int, list[int]] = {
    1: [1, 11, 20, 21],
    2: [4, 10, 12, 14],
    3: [8, 9, 19, 23],
    4: [3, 5, 7, 24],
    5: [2, 15, 16, 18],
    6: [6, 13, 17, 22],
}
# Ours: 2 odd (male) + 2 even (female) actors outside the fold's test set.
EMOBOX_VAL_ACTORS: dict[int, list[int]] = {
    1: [3, 9, 4, 16],
    2: [1, 15, 6, 22],
    3: [5, 13, 2, 10],
    4: [11, 17, 12, 20],
    5: [19, 21, 8, 14],
    6: [7, 23, 18, 24],
}
# Published UA / WA / macro-F1 (%) on these folds, frozen pretrained features + small head.
EMOBOX_PUBLISHED: dict[str, tuple[float, float, float]] = {
    "whisper-large-v3": (75.32, 75.87, 75.19),
    "wavlm-large": (72.00, 72.22, 71.42),
    "data2vec2-large": (71.15, 71.63, 70.94),
    "hubert-large": (70.00, 70.29, 69.54),
    "wav2vec2-base": (54.33, 55.40, 53.99),
}

LEAKY_WARNING = (
    "random split: file-level and speaker-dependent; the same actors are in train and "
    "test, so these scores overstate accuracy on new speakers (leaky)"
)


def actor_roles(cfg: SplitConfig) -> dict[str, list[int]]:
    """Test and validation actors of a speaker-independent protocol."""
    if cfg.protocol == "emobox":
        if cfg.fold not in EMOBOX_TEST_ACTORS:
            raise ValueError(f"emobox fold must be 1..6, got {cfg.fold}")
        return {"test": EMOBOX_TEST_ACTORS[cfg.fold], "val": EMOBOX_VAL_ACTORS[cfg.fold]}
    if cfg.protocol == "actors":
        test, val = list(cfg.test_actors), list(cfg.val_actors)
        if not test or not val:
            raise ValueError("protocol 'actors' needs --test-actors and --val-actors")
        if set(test) & set(val):
            raise ValueError(f"actors {sorted(set(test) & set(val))} are in both test and val")
        return {"test": test, "val": val}
    raise ValueError(f"protocol {cfg.protocol!r} has no actor roles")


def split_name(cfg: SplitConfig, *, seed: int, keep_duplicates: bool = False) -> str:
    """Folder name of a split, e.g. ``emobox-fold1`` or ``random-seed42``."""
    if cfg.protocol == "emobox":
        name = f"emobox-fold{cfg.fold}"
    elif cfg.protocol == "actors":
        name = "actors-test" + "_".join(map(str, cfg.test_actors))
    elif cfg.protocol == "random":
        name = f"random-seed{seed}"
    else:
        raise ValueError(f"unknown protocol {cfg.protocol!r} (emobox, actors, random)")
    return name + ("-with-duplicates" if keep_duplicates else "")


def limit_actors(actors: list[int], cfg: SplitConfig, n: int) -> list[int]:
    """At most ``n`` of ``actors`` for a quick run, keeping every split populated.

    For actor protocols the kept actors are taken round-robin from test, validation and
    training actors; for ``random``, the lowest ids.
    """
    actors = sorted(set(actors))
    if n <= 0 or n >= len(actors):
        return actors
    if cfg.protocol == "random":
        return actors[:n]
    if n < 3:
        raise ValueError(f"limit_actors={n}: an actor protocol needs at least 3 actors "
                         "(one each for train, validation and test)")
    roles = actor_roles(cfg)
    held_out = set(roles["test"]) | set(roles["val"])
    queues = [
        [a for a in roles["test"] if a in actors],
        [a for a in roles["val"] if a in actors],
        [a for a in actors if a not in held_out],
    ]
    kept: list[int] = []
    while len(kept) < n and any(queues):
        for queue in queues:
            if queue and len(kept) < n:
                kept.append(queue.pop(0))
    return sorted(kept)


def assign_splits(meta: pd.DataFrame, cfg: SplitConfig, *, seed: int) -> pd.Series:
    """The split (``train``/``val``/``test``) of each clip in ``meta``.

    ``meta`` needs the columns ``actor`` and ``emotion``. For ``random``, the split is
    stratified by emotion and reproducible from ``seed``.
    """
    if cfg.protocol == "random":
        index = np.arange(len(meta))
        labels = meta["emotion"].to_numpy()
        rest, test = train_test_split(index, test_size=cfg.test_fraction, stratify=labels,
                                      random_state=seed)
        val_share = cfg.val_fraction / (1 - cfg.test_fraction)
        train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest],
                                      random_state=seed)
        split = np.empty(len(meta), dtype=object)
        split[train], split[val], split[test] = "train", "val", "test"
        return pd.Series(split, index=meta.index, name="split")
    roles = actor_roles(cfg)
    role_of = {a: "test" for a in roles["test"]} | {a: "val" for a in roles["val"]}
    return meta["actor"].map(lambda a: role_of.get(int(a), "train")).rename("split")


def split_table(meta: pd.DataFrame) -> pd.DataFrame:
    """Clips per emotion (rows) and split (columns), with totals and the actors of each split."""
    table = pd.crosstab(meta["emotion"], meta["split"], margins=True, margins_name="total")
    table = table.reindex(columns=[c for c in (*SPLITS, "total") if c in table.columns]).astype(object)
    actors = {s: ", ".join(str(a) for a in sorted(meta.loc[meta["split"] == s, "actor"].unique()))
              for s in table.columns if s != "total"}
    table.loc["actors"] = pd.Series(actors)
    return table.fillna("")


def first_per_emotion(split) -> dict:
    """label -> log-mel of the first training clip of that emotion, for a picture."""
    return {label: split.X_train[int(np.flatnonzero(split.y_train == i)[0])]
            for i, label in enumerate(split.labels) if np.any(split.y_train == i)}
