"""Speech emotion recognition on RAVDESS with a Keras CNN on log-mel spectrograms."""
