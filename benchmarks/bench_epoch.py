"""Time training epochs of the default model and count their page faults.

    .venv/bin/python benchmarks/bench_epoch.py            # as the package trains
    .venv/bin/python benchmarks/bench_epoch.py --plain    # without emotion_cnn.allocator's settings
    .venv/bin/python benchmarks/bench_epoch.py --set model.convs_per_block=2   # another model
    .venv/bin/python benchmarks/bench_epoch.py --set train.mutual_weight=1  # 3 members together
    taskset -c 0 .venv/bin/python benchmarks/bench_epoch.py --workers 1  # tf.data's autotuned feed

960 (``--clips``) synthetic clips of the default feature shape, fed through training's own
``AugmentedBatches`` (masks, shifts, mixup), batch 32, one TensorFlow thread. ``--set`` changes
a setting as the CLI does. ``--workers`` sets the batch builder's thread pool
(training uses 2 on TensorFlow): with ``--workers 1`` TensorFlow feeds ``fit`` through tf.data's
autotuned prefetch, which sleeps when the training's threads share one CPU (rounds 19 and 20).
Prints wall, user and kernel seconds and minor page faults per epoch (the first epoch includes
tracing).
Batch norm trains as ``train.fused_batchnorm`` says (``--set train.fused_batchnorm=true``:
TensorFlow's fused kernel, round 25).
``--plain`` must be its own process: the settings are applied when :mod:`emotion_cnn` is
first imported.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import types


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be 1 or more")
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plain", action="store_true", help="skip emotion_cnn.allocator")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--clips", type=int, default=960, help="synthetic clips an epoch")
    parser.add_argument("--workers", type=positive_int, default=None,
                        help="threads building batches (default: as training, 2 on TensorFlow)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting, as the CLI takes it")
    args = parser.parse_args()
    for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    if args.plain:
        os.environ.pop("TF_CPU_ALLOCATOR_USE_BFC", None)  # a parent that imported emotion_cnn set it
        stub = types.ModuleType("emotion_cnn.allocator")
        stub.keep_freed_memory = lambda: False
        sys.modules["emotion_cnn.allocator"] = stub

    import keras
    import numpy as np

    from emotion_cnn.cli import parse_set
    from emotion_cnn.config import load_config
    from emotion_cnn.fused_batchnorm import fused_batchnorm
    from emotion_cnn.model import build_model
    from emotion_cnn.train import AugmentedBatches, MutualLoss, stacked_members

    cfg = load_config(**parse_set(args.set))
    shape = (cfg.features.n_mels, cfg.features.n_frames)
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    X = rng.standard_normal((args.clips, *shape)).astype("float32")
    y = rng.integers(0, 8, len(X))
    pool = {} if args.workers is None else {"workers": args.workers}
    batches = AugmentedBatches(X, y, num_classes=8, cfg=cfg.train, seed=cfg.seed, **pool)

    class Report(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start, self.usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)

        def on_epoch_end(self, epoch, logs=None):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            print(f"epoch {epoch + 1}: {time.perf_counter() - self.start:.1f} s wall, "
                  f"user {usage.ru_utime - self.usage.ru_utime:.1f} s, "
                  f"kernel {usage.ru_stime - self.usage.ru_stime:.1f} s, "
                  f"{usage.ru_minflt - self.usage.ru_minflt} page faults", flush=True)

    if cfg.train.mutual_weight:  # the ensemble's members side by side, as training fits them
        model = stacked_members([build_model(shape, 8, cfg.model) for _ in range(cfg.train.ensemble)])
        model.compile("adam", MutualLoss(cfg.train.mutual_weight))
    else:
        model = build_model(shape, 8, cfg.model)
        model.compile("adam", "categorical_crossentropy")
    with fused_batchnorm(cfg.train.fused_batchnorm) as fused:
        print(f"{'plain' if args.plain else 'emotion_cnn.allocator'}: {len(X)} clips {shape}, "
              f"{model.count_params()} parameters, {batches.workers} batch workers, "
              f"TF_CPU_ALLOCATOR_USE_BFC={os.environ.get('TF_CPU_ALLOCATOR_USE_BFC', '(unset)')}, "
              f"{'fused' if fused else 'Keras'} batch norm")
        model.fit(batches, epochs=args.epochs, verbose=0, callbacks=[Report()])
    return 0


if __name__ == "__main__":
    sys.exit(main())
