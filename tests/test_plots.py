import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from emotion_cnn import plots  # noqa: E402


def _history(val_loss, member=None):
    n = len(val_loss)
    frame = pd.DataFrame({"epoch": np.arange(1, n + 1), "loss": np.linspace(2, 1, n), "val_loss": val_loss,
                          "accuracy": np.linspace(0.2, 0.6, n), "val_accuracy": np.linspace(0.2, 0.5, n)})
    return frame if member is None else frame.assign(member=member)


def _best_epoch_lines(fig):
    return sorted(line.get_xdata()[0] for line in fig.axes[1].lines if line.get_linestyle() == "--")


def test_training_curves_marks_the_restored_epoch_and_saves(tmp_path):
    path = tmp_path / "curves.png"
    fig = plots.training_curves(_history([1.5, 1.2, 1.3, 1.4]), path=path)
    assert path.stat().st_size > 0
    assert _best_epoch_lines(fig) == [2]
    assert len(fig.axes[0].lines) == 2
    plt.close(fig)


def test_training_curves_draw_each_ensemble_member():
    history = pd.concat([_history([1.5, 1.2, 1.3], member=1), _history([1.4, 1.3, 1.1], member=2)])
    fig = plots.training_curves(history)
    labels = [line.get_label() for line in fig.axes[0].lines]
    assert labels == ["train accuracy (model 1)", "validation accuracy (model 1)",
                      "train accuracy (model 2)", "validation accuracy (model 2)"]
    assert _best_epoch_lines(fig) == [2, 3]
    plt.close(fig)


def test_training_curves_mark_the_kept_epoch_and_draw_no_validation_when_there_was_none():
    history = _history([1.5, 1.2, 1.3]).drop(columns=["val_loss", "val_accuracy"]).assign(kept=[False, False, True])
    fig = plots.training_curves(history)
    assert [line.get_label() for line in fig.axes[0].lines] == ["train accuracy"]
    assert _best_epoch_lines(fig) == [3]
    assert "kept: last epoch" in [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    plt.close(fig)


@pytest.mark.parametrize("normalize", [False, True])
def test_confusion_heatmap_is_labelled(tmp_path, normalize):
    labels = ["neutral", "calm", "happy"]
    fig = plots.confusion_heatmap(np.array([[3, 1, 0], [0, 4, 0], [1, 0, 3]]), labels,
                                  normalize=normalize, path=tmp_path / "cm.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert (tmp_path / "cm.png").is_file()
    plt.close(fig)
