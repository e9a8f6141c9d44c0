"""Time one prediction as the app makes it: decode, resample, features, the model's ensemble.

    RAVDESS_DIR=../shared/ravdess python benchmarks/bench_predict.py
    RAVDESS_DIR=../shared/ravdess python benchmarks/bench_predict.py old.keras emotion_cnn_model.keras

Each model (default: the committed one) is loaded once and warmed up with one call, then
``app.analyse`` runs ``--repeats`` times on the same clip (default: a 4.1 s, 48 kHz RAVDESS
clip from the dataset folder the package uses: ``$RAVDESS_DIR``, else ``dataset/``; sent as
WAV bytes as an upload would be). With several models the rounds alternate
(model A, B, A, B, ...) so that the VM's drift falls on all of them alike. Prints the median
and the fastest call per model and round.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

DEFAULT_CLIP = "Actor_01/03-01-05-02-01-01-01.flac"  # angry, strong intensity, 4.1 s


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return int(text)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("models", nargs="*", help="saved .keras models (default: the committed one)")
    parser.add_argument("--clip", type=Path,
                        help=f"audio file (default: {DEFAULT_CLIP} in $RAVDESS_DIR, else in dataset/)")
    parser.add_argument("--repeats", type=positive_int, default=10, help="timed calls a round")
    parser.add_argument("--rounds", type=positive_int, default=2, help="rounds over all the models")
    args = parser.parse_args()

    from emotion_cnn.config import Config, paths, resolve_data_dir

    clip = args.clip or resolve_data_dir(Config()) / DEFAULT_CLIP
    if not clip.is_file():
        print(f"{clip}: no such audio file; pass --clip, set RAVDESS_DIR to the RAVDESS folder, "
              "or run `emotion-cnn fetch` to download it into dataset/", file=sys.stderr)
        return 2

    import soundfile as sf

    from emotion_cnn.app import analyse
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
