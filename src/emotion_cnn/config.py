"""Every path and every setting of the project, in one place.

Settings are a typed dataclass tree with defaults (the ones that produced the README
figures), overridden by a small YAML file, then by command-line flags. The resolved config
is saved beside every output so a run can be repeated exactly.

Paths are built from the project root: the checkout when the package is installed from it
(``pip install -e .``), else ``$EMOTION_CNN_ROOT``, else the current directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


def _find_project_root() -> Path:
    if env := os.environ.get("EMOTION_CNN_ROOT"):
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "emotion_cnn").is_dir():
        return checkout
    return Path.cwd().resolve()


@dataclass(frozen=True)
class Paths:
    """Where everything lives, from the project root."""

    root: Path

    @property
    def dataset(self) -> Path:  # raw audio, read-only to the pipeline
        return self.root / "dataset"

    @property
    def spectrograms(self) -> Path:  # PNGs per emotion, metadata.csv (derived)
        return self.root / "spectrograms"

    @property
    def cache(self) -> Path:  # features keyed by sample hash + settings (derived)
        return Path(os.environ.get("EMOTION_CNN_CACHE", self.spectrograms / ".cache"))

    @property
    def splits(self) -> Path:  # X_/y_*.npy per protocol (derived)
        return self.root / "splits"

    @property
    def runs(self) -> Path:  # one folder per training run
        return self.root / "runs"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def model(self) -> Path:
        return self.root / "emotion_cnn_model.keras"

    @property
    def model_info(self) -> Path:  # sidecar: label order, settings, scores
        return self.root / "emotion_cnn_model.json"


def paths() -> Paths:
    """The project's paths, resolved now (so ``$EMOTION_CNN_ROOT`` can move them)."""
    return Paths(_find_project_root())


EMOTIONS: tuple[str, ...] = (
    "neutral",
    "calm",
    "happy",
    "sad",
    "angry",
    "fearful",
    "disgust",
    "surprised",
)
LABEL_INDEX: dict[str, int] = {label: i for i, label in enumerate(EMOTIONS)}
AVERAGES: tuple[str, ...] = ("logits", "probabilities")  # train.average: how an ensemble's members join
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")  # train.optimizer


def _check_one_of(setting: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{setting} must be one of {', '.join(choices)}, not {value!r}")


def check_average(average: str) -> None:
    """Raise ``ValueError`` unless ``average`` is one of :data:`AVERAGES`."""
    _check_one_of("train.average", average, AVERAGES)


def check_optimizer(optimizer: str) -> None:
    """Raise ``ValueError`` unless ``optimizer`` is one of :data:`OPTIMIZERS`."""
    _check_one_of("train.optimizer", optimizer, OPTIMIZERS)


@dataclass
class FeatureConfig:
    """How a clip becomes a log-mel array of shape ``(n_mels, n_frames)``."""

    sr: int = 16000
    duration: float = 3.0  # seconds kept after trimming: centre crop or centre pad
    trim_top_db: float = 30.0  # silence = this many dB below the clip's peak; round 52: 45 lost 1.5 validation UA
    n_fft: int = 512
    hop_length: int = 320  # 20 ms: half the CPU cost of 10 ms, same validation accuracy
    win_length: int = 400
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float = 8000.0
    top_db: float = 80.0  # log-mel range: [-top_db, 0] dB relative to the clip's peak

    @property
    def n_samples(self) -> int:
        return int(round(self.duration * self.sr))

    @property
    def n_frames(self) -> int:
        return 1 + self.n_samples // self.hop_length

    def key(self) -> str:
        """Short content key of these settings, for the feature cache."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


@dataclass
class SplitConfig:
    protocol: str = "emobox"  # emobox | actors | random
    fold: int = 1  # emobox fold, 1..6
    test_actors: list[int] = field(default_factory=list)  # protocol=actors
    val_actors: list[int] = field(default_factory=list)  # protocol=actors
    test_fraction: float = 1 / 6  # protocol=random
    val_fraction: float = 1 / 6  # protocol=random


@dataclass
class ModelConfig:
    filters: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    convs_per_block: int = 1
    # True: each block adds its input to its last conv's output before the ReLU (a residual
    # block; a 1x1 conv matches the channels), meant for convs_per_block >= 2. Rounds 49-50, with
    # convs_per_block=2: at half width 64.5 validation UA alone (the default's member 66.4); at full
    # width 66.2 alone, for 2.8x the training, and -0.04 in an ensemble in place of two 2-D members
    residual: bool = False
    # time: mean and max over time, frequency position kept; attention: a learned weighted
    # mean instead of the plain one; global: mean and max over time and frequency
    pooling: str = "time"
    # >0: a bidirectional GRU of this size reads a block's frames in order (recurrent_block),
    # its final states beside the mean and max (round 12: 32 units, +1.3 validation UA over 3 seeds;
    # round 13: 64 units, a further +0.9 over 3 seeds; 0: off)
    recurrent_units: int = 64
    recurrent_layers: int = 1  # stacked GRUs; round 17: 2 lost 1.1 validation UA (one seed)
    recurrent_block: int = -1  # the block whose map the GRU reads: -1 the last, -2 the one before (about 2x the frames)
    # True: after the dataset normalisation, subtract each clip's own mean per mel band, which
    # takes the speaker's (and the microphone's) long-term spectrum out of the input
    utterance_norm: bool = False
    # >0: the input's first rows are this many per-frame pitch features (benchmarks/export_pitch.py),
    # read by two 1-D convs over time (mean and max join the pooled features), the rest the mel
    # bands; 0: every row is a mel band. Round 35: 2 rows (pyin's pitch and voiced flag) lost 0.2
    # as single models and 0.6 as the 3-member ensemble on validation actors
    pitch_rows: int = 0
    dropout: float = 0.1  # round 6: 0.1 was +0.7 validation UA over 0.3; 0.5 was -7 (round 1)
    # >0: dropout of this rate after every block's pooling, as in PANNs' CNN14 (0.2 there), so
    # later blocks cannot lean on single units of the maps before; 0: off. Round 31: 0.2 lost
    # 14.4 validation UA on seed 42 (52.9 against 67.3), under the default on every fold
    block_dropout: float = 0.0
    # True: 1-D convs over time only (temporal_kernel frames), the mel bands as the input's channels, so
    # each filter sees the whole spectrum of a few frames; blocks of filters[i] channels, each
    # halving the frames; a member of another kind than the 2-D default (round 40). Wants wider
    # blocks, e.g. [128, 128, 256, 256]; pooling time or global (the same over time alone)
    temporal: bool = False
    temporal_filters: list[int] = field(default_factory=lambda: [128, 128, 256, 256])  # train.temporal_members'
    # frames each temporal conv sees (model.temporal). Round 43: 9 scored 2.3 lower alone and
    # -0.02 validation UA as the fourth member (9 ensembles), for more time (113 s a fold against 83)
    temporal_kernel: int = 5
    l2: float = 1e-4


@dataclass
class TrainConfig:
    # round 24: 50 instead of 60, for the 45-minute benchmark; validation UA 66.6 against 66.7
    # over 3 seeds, 69.5 against 69.7 as the 3-member ensemble (rule: >= 66.2 and >= 69.2)
    epochs: int = 50
    batch_size: int = 32
    learning_rate: float = 3e-3  # peak; round 8: 6e-3 lost on 3 folds, round 29: 1.5e-3 lost 2.2 and 3.1 (two seeds)
    # adam, or sgd: SGD with Nesterov momentum ``momentum``, model.l2 a true weight decay there
    # (under Adam the L2 gradient is rescaled per weight). Round 51: sgd at peak learning_rate 0.02
    # and 0.06 lost 5.7 and 6.7 validation UA against adam (one member, seed 42)
    optimizer: str = "adam"
    momentum: float = 0.9  # optimizer=sgd
    patience: int = 60  # restore_best only: EarlyStopping on val loss, the best epoch restored
    schedule: str = "cosine"  # plateau: halve on a val-loss plateau; cosine: warm-up then cosine decay
    lr_patience: int = 4  # schedule=plateau
    warmup_epochs: int = 3  # schedule=cosine
    class_weights: bool = True
    label_smoothing: float = 0.0  # share of each target spread evenly over all classes
    # >0: AdamW, weights shrunk by learning_rate * weight_decay every step, apart from the loss
    # (batch-norm scales and offsets and biases exempt); 0: Adam, model.l2 the only decay.
    # Round 28: 0.05 with model.l2 0 lost 1.3 and 1.4 validation UA on seeds 42 and 43
    weight_decay: float = 0.0
    # >0: while training, a second head (one sigmoid unit beside the emotion layer) learns whether
    # each clip was acted with strong or normal intensity, its binary cross-entropy weighted by
    # this beside the emotion loss; the head is not part of the saved model. 0: off. Round 30:
    # 0.5 lost 2.0 and 1.4 validation UA on seeds 42 and 43 against the default on the same VM
    intensity_weight: float = 0.0
    # models trained with seeds seed, seed+1, ...; joined by train.average. 3: round 15's rule
    # (validation UA of 3 members >= the mean of the 2-member pairs + 0.5) was met, 69.8 vs 69.1
    ensemble: int = 3
    # this many more members, each a 1-D temporal CNN (model.temporal with model.temporal_filters),
    # seeds seed, seed+1, ...: a model of another kind, whose mistakes differ more from the 2-D
    # members' than another 2-D member's do. Round 41: as a fourth member, 70.2 validation UA
    # against 69.5 for a fourth 2-D one (mean over 6 ensembles each; 62.0 and 62.1 alone over 3
    # seeds each, the 2-D member 66.4); 0.62x a 2-D member's training
    temporal_members: int = 1
    # how the members join (AVERAGES): probabilities, the mean of their probabilities; logits, the
    # softmax of the mean of their logits, which is the normalised geometric mean of their
    # probabilities (a product of experts: a class that one member finds very unlikely stays
    # unlikely). Round 42: logits +0.07 and +0.18 validation UA on fresh seeds (rule: +0.2 each)
    average: str = "probabilities"
    # >0: the ensemble's members train together on the same batches, each one's loss its
    # cross-entropy plus this times the KL divergence from the mean of the others' probabilities
    # (deep mutual learning, train.MutualLoss); history.csv then has one row per epoch, its loss
    # the sum over the members (which restore_best and the plateau schedule then follow), its
    # accuracy the ensemble's. 0: each member trains alone, on its own seed's batches. Round 36:
    # 1.0 lost 1.9 validation UA as the 3-member ensemble (67.3 against 69.2), 0.9 for its members alone
    mutual_weight: float = 0.0
    # >0 (even): each member trains without this many of its training actors, half of each
    # gender, drawn from the member's own seed (train.without_some_actors): bagging over speakers,
    # so that the members' errors differ by more than their seeds. 0: every member sees every actor.
    # Round 38: 2 lost 2.5 validation UA a member and 2.1 as the 3-member ensemble (67.1 against 69.2)
    bag_drop_actors: int = 0
    # epochs (1-based, before the last) whose weights also join the ensemble beside the last
    # epoch's, in every member: a snapshot ensemble at no extra training cost. []: off. Round 27:
    # epochs 30 and 40 lost 0.3 and 2.2 validation UA on two seeds against the last epoch alone
    snapshot_epochs: list[int] = field(default_factory=list)
    restore_best: bool = False  # True: keep the epoch of lowest validation loss; False: the last one
    # True: train on the training + validation actors for exactly `epochs` epochs and keep the
    # last one: 4 more speakers (+5.4 validation UA from 12 to 16 training actors, round 5), at
    # the price of no validation curves. False: hold the validation actors out (tuning runs).
    train_on_val: bool = True
    # >0: the saved weights are a moving average over training steps (of the trainable weights:
    # batch-norm statistics and the per-epoch validation scores are those of the raw weights)
    ema_momentum: float = 0.0
    # True: after training, every batch-norm layer's moving statistics are recomputed on the clean
    # training clips (model.recalibrate_batch_norm), not left as averages over augmented batches.
    # Round 32: lost 1.7 and 0.5 validation UA on seeds 42 and 43 (paired: same trained weights)
    precise_bn: bool = False
    # TensorFlow only: batch norm trains through TensorFlow's fused kernel (emotion_cnn.fused_batchnorm),
    # same maths in one pass, about 30 % off an epoch on the CPU; other rounding, so weights differ
    # from Keras' own path. Round 26 (fresh seeds, both arms): singles 65.6 against 66.1, the
    # 3-member ensemble 68.9 against 68.1 (rule: each >= the stock arm's - 0.5); round 25 missed
    # its rule by 0.2 as an ensemble
    fused_batchnorm: bool = True
    # augmentation, training only
    time_masks: int = 1
    time_mask_width: int = 15  # frames
    freq_masks: int = 1
    freq_mask_width: int = 8
    max_shift: int = 8  # frames, circular time shift
    mixup_alpha: float = 0.2  # 0 disables mixup
    # >0: the share of batches in which each clip's per-band mean and spread over time are mixed
    # with another clip's (train.mix_band_statistics, Freq-MixStyle), Beta(mixstyle_alpha) weights.
    # Round 37: 0.4 lost 1.1 and gained 0.1 validation UA on seeds 42 and 43 (fold 4: -6 on both)
    mixstyle_p: float = 0.0
    mixstyle_alpha: float = 0.3
    # True: each clip's partner has its emotion. Round 39: lost 3.1 and 0.4 on seeds 42 and 43
    mixstyle_same_class: bool = False
    time_stretch: float = 0.0  # max relative tempo change, e.g. 0.1: 0.9x..1.1x
    # max relative scaling of the mel-band index (moves bands up or down). Round 4: 0.04 lost 3
    # validation UA; round 54: 0.02 lost 0.69 over three seeds (male voices 1.7)
    freq_warp: float = 0.0


@dataclass
class Config:
    seed: int = 42
    data_dir: str = ""  # empty: $RAVDESS_DIR, else dataset/
    keep_duplicates: bool = False  # True reproduces the leaky doubled-data setup
    limit_actors: int = 0  # >0: only the first N actors (quick runs)
    workers: int = 0  # 0: all cores
    features: FeatureConfig = field(default_factory=FeatureConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _merge(obj: Any, overrides: dict[str, Any], where: str) -> None:
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        if key not in names:
            raise ValueError(f"{where}: unknown setting {key!r} (known: {', '.join(names)})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {key!r} must be a mapping")
            _merge(current, value, f"{where}.{key}")
        else:
            if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, type(current)):
                raise ValueError(f"{where}.{key}: expected {type(current).__name__}, got {value!r}")
            setattr(obj, key, value)


def config_from_dict(data: dict[str, Any] | None) -> Config:
    """A :class:`Config` with defaults overridden by a nested mapping."""
    cfg = Config()
    _merge(cfg, data or {}, "config")
    return cfg


# Settings added since older records (benchmark reports, feature exports) were written, with
# the value those runs had where it is not the default: before round 5 every run restored its
# best epoch and held the validation actors out; before round 12 no model had a recurrent part;
# before round 25 batch norm always trained through Keras' own operations; before round 41 no
# ensemble had a temporal member. train.average is listed although its default is the old value:
# records before round 42 averaged probabilities, whatever the default becomes.
# A setting missing from a record and not listed here ran as its default.
SETTINGS_OF_OLDER_RECORDS: dict[str, dict[str, Any]] = {
    "train": {"restore_best": True, "train_on_val": False, "fused_batchnorm": False, "temporal_members": 0,
              "average": "probabilities"},
    "model": {"recurrent_units": 0},
}


def config_from_record(data: dict[str, Any]) -> Config:
    """The :class:`Config` a saved record ran with: settings it lacks take the value they had
    before they existed (:data:`SETTINGS_OF_OLDER_RECORDS`, else the default). A setting the
    record has and this code has since removed raises ``ValueError``."""
    recorded = {**data, **{section: {**older, **data.get(section, {})}
                           for section, older in SETTINGS_OF_OLDER_RECORDS.items()}}
    return config_from_dict(recorded)


def load_config(path: str | Path | None = None, **dotted: Any) -> Config:
    """Defaults, then the YAML file at ``path``, then ``dotted`` overrides.

    ``dotted`` keys use ``__`` for nesting, e.g. ``train__epochs=5``; ``None`` values are
    ignored so that unset CLI flags do not override the file.
    """
    data: dict[str, Any] = {}
    if path is not None:
        with open(path) as handle:  # an open file makes YAML errors name it
            loaded = yaml.safe_load(handle)
        if loaded is not None and not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config file must hold a mapping")
        data = loaded or {}
    cfg = config_from_dict(data)
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        if value is None:
            continue
        node = nested
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    _merge(cfg, nested, "override")
    return cfg


def save_config(cfg: Config, path: Path) -> None:
    from emotion_cnn.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def resolve_data_dir(cfg: Config) -> Path:
    """The dataset folder: the config's, else ``$RAVDESS_DIR``, else ``dataset/``."""
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser().resolve()
    if env := os.environ.get("RAVDESS_DIR"):
        return Path(env).expanduser().resolve()
    return paths().dataset
