"""Time one prediction as the app makes it: decode, resample, features, the model's ensemble.

    RAVDESS_DIR=../shared/ravdess python benchmarks/bench_predict.py
    RAVDESS_DIR=../shared/ravdess python benchmarks/bench_predict.py old.keras emotion_cnn_model.keras

Each model (default: the committed one) is loaded once and warmed up with one call, then
``app.analyse`` runs ``--repeats`` times on the same clip (default: a 4.1 s, 48 kHz RAVDESS
clip, sent as WAV bytes as an upload would be). With several models the rounds alternate
(model A, B, A, B, ...) so that the VM's drift falls on all of them alike. Prints the median
and the fastest call per model and round.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

DEFAULT_CLIP = "Actor_01/03-01-05-02-01-01-01.flac"  # angry, strong intensity, 4.1 s


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", help="saved .keras models (default: the committed one)")
    parser.add_argument("--clip", help=f"audio file (default: $RAVDESS_DIR/{DEFAULT_CLIP})")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls a round")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all the models")
    args = parser.parse_args()
    clip = args.clip or (os.environ.get("RAVDESS_DIR") and Path(os.environ["RAVDESS_DIR"]) / DEFAULT_CLIP)
    if not clip:
        print("set RAVDESS_DIR to the RAVDESS folder, or pass --clip", file=sys.stderr)
        return 2

    import soundfile as sf

    from emotion_cnn.app import analyse
    from emotion_cnn.config import paths
    from emotion_cnn.predict import load_classifier

    samples, sr = sf.read(clip)
    wav = io.BytesIO()
    sf.write(wav, samples, sr, format="WAV")
    data = wav.getvalue()
    print(f"{clip}: {len(samples) / sr:.2f} s at {sr} Hz, {args.repeats} calls a round")
    classifiers = {str(model): load_classifier(model) for model in (args.models or [paths().model])}
    for classifier in classifiers.values():
        analyse(data, "clip.wav", classifier)  # the first call traces the model
    for round_number in range(1, args.rounds + 1):
        for model, classifier in classifiers.items():
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                analyse(data, "clip.wav", classifier)
                seconds.append(time.perf_counter() - start)
            print(f"round {round_number} {model}: median {1000 * statistics.median(seconds):.0f} ms, "
                  f"fastest {1000 * min(seconds):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
