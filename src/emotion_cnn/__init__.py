"""Speech emotion recognition on RAVDESS with a Keras CNN on log-mel spectrograms."""

from emotion_cnn.allocator import keep_freed_memory

# before TensorFlow's first operation creates its CPU allocator (see emotion_cnn.allocator)
keep_freed_memory()
