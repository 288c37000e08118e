"""Training the Acc_emo classifier: the debug config on face-crop shards, exported in Emotion-FAN's layout and
loaded by the metric without being told the class order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from eval.metrics.emotion import EmotionAccuracy
from eval.networks.emotion_fan import load_emotion_fan
from pctalk.data.schema import EMOTIONS


def test_emotion_classifier_trains_and_exports(run_cli, tmp_path: Path) -> None:
    run_cli(["fit", "-c", REPO / "experiments/eval/emotion_classifier_debug.yaml",
             "--data.init_args.root", tmp_path / "synth", "--data.init_args.synthetic.folder", tmp_path / "synth",
             "--trainer.default_root_dir", tmp_path / "run"], timeout=600)  # fmt: skip
    export = tmp_path / "run" / "emotion_fan.pth.tar"
    assert export.is_file()
    ckpt = torch.load(export, weights_only=True)
    assert set(ckpt) == {"epoch", "state_dict", "accuracy", "classes"}
    assert all(k.startswith("module.") for k in ckpt["state_dict"])  # as Emotion-FAN's DataParallel files
    net, classes = load_emotion_fan(export)
    assert classes == EMOTIONS and net.pred_fc2.out_features == 8
    metric = EmotionAccuracy(export)
    faces = np.random.default_rng(0).integers(0, 255, (3, 256, 256, 3), dtype=np.uint8)
    metric.update([faces], [metric.predict(faces)])
    assert float(metric.compute()) == 1.0


def test_missing_face_crops_say_how_to_build_them(synthetic_corpus: Path) -> None:
    from eval.classifier import EmotionFaceDataModule
    from pctalk.data.schema import SchemaError

    data = EmotionFaceDataModule(str(synthetic_corpus), batch_size=2)
    with pytest.raises(SchemaError, match="--face-frames"):
        data.val_dataloader()
