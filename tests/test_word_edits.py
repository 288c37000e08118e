"""Word-level style edits from the user's own clip: the clip's words are aligned to its audio (eSpeak + DTW), the
pronunciation vector comes from the frames where the word is spoken, and ``pctalk generate --style-edit-from``
scales it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from pctalk.audio.alignment import align_words, dtw_path
from pctalk.audio.tts import synthesize
from pctalk.cli import main
from pctalk.control.lip import pronunciation
from pctalk.inference import Controls, TalkingFacePipeline
from pctalk.keypoints.regions import LIPS
from raw_media import talking_video

TEXT = "The duck ate too many bees before lunch."


def test_dtw_path_follows_a_stretched_copy() -> None:
    a = np.array([[0.0], [1.0], [2.0], [3.0]])
    b = np.array([[0.0], [1.0], [1.0], [2.0], [3.0], [3.0]])
    assert dtw_path(a, b).tolist() == [[0, 0], [1, 1], [1, 2], [2, 3], [3, 4], [3, 5]]


def test_words_are_found_in_a_recording_by_another_voice() -> None:
    """Another eSpeak voice at another rate, with noise and half a second of silence before: every word's start and
    end within 70 ms (under two video frames) of where that voice said it."""
    other = synthesize(TEXT, voice="en-us", rate=140)
    noisy = other.wav + 0.01 * torch.randn(len(other.wav), generator=torch.Generator().manual_seed(0))
    recording = torch.cat([torch.zeros(8000), noisy, torch.zeros(4000)])
    words = align_words(recording, TEXT)
    assert [w.text for w in words] == [w.text for w in other.words]
    errors = [
        max(abs(w.start - t.start - 0.5), abs(w.end - t.end - 0.5)) for w, t in zip(words, other.words, strict=True)
    ]
    assert max(errors) < 0.07, errors
    with pytest.raises(ValueError, match="transcript is empty"):
        align_words(recording, " ")


@pytest.fixture
def pipeline(release: Path, liveportrait_weights: Path) -> TalkingFacePipeline:
    return TalkingFacePipeline.from_checkpoints(release / "lac.pth", weights=liveportrait_weights, cropper="opencv",
                                                liveportrait_size="tiny", progress=False)  # fmt: skip


def test_a_pronunciation_from_the_users_clip(
    pipeline: TalkingFacePipeline, release: Path, liveportrait_weights: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    clip = talking_video(tmp_path / "me.mp4", TEXT)
    vector = pipeline.pronunciation_from_clip(clip, "duck", transcript=TEXT)
    # by hand: the frames the aligned word covers, the clip's deformation minus its median, mean, normalised
    (duck,) = [w for w in align_words(pipeline._audio(str(clip), None), TEXT) if w.text == "duck"]
    face = pipeline.load_source(clip)
    lips = face.motion.scale[:, :, None] * face.motion.exp[:, list(LIPS)]
    frames = [i for i in range(len(lips)) if duck.start <= i / 25 < duck.end]
    mean = (lips - lips.median(dim=0).values)[frames].mean(0)
    torch.testing.assert_close(torch.tensor(vector), (mean / mean.norm()).reshape(-1))
    assert pipeline.pronunciation_from_clip(clip, "duck", span=(duck.start, duck.end)) == vector
    # the edit moves the lips only, along the user's vector (not the built-in "duck")
    wav = synthesize("Bees buzz in the quiet lake.").wav
    source = pipeline.load_source(clip)
    base = pipeline.motion(wav, source, Controls(refine=False))
    own = pipeline.motion(wav, source, Controls(refine=False, style_edits={"duck": 2.0},
                                                pronunciations={"duck": vector}))  # fmt: skip
    builtin = pipeline.motion(wav, source, Controls(refine=False, style_edits={"duck": 2.0}))
    moved = (own.keypoints - base.keypoints).abs().amax(dim=(0, 2)) > 1e-7
    assert set(torch.nonzero(moved).flatten().tolist()) <= set(LIPS) and moved.any()
    assert not torch.allclose(own.lips, builtin.lips)
    v = torch.tensor(vector).view(6, 3)
    assert not torch.allclose(v, pronunciation("duck"))
    # the command line: the same motion as the controls
    common = ["generate", "--lac", str(release / "lac.pth"), "--text", "Bees buzz in the quiet lake.", "--no-progress",
              "--weights", str(liveportrait_weights), "--liveportrait-size", "tiny", "--cropper", "opencv"]  # fmt: skip
    assert main([*common, "--style-edit-from", f"{clip}:duck=2", "--transcript", TEXT,
                 "--save-motion", str(tmp_path / "cli.npz")]) == 0  # fmt: skip
    pipeline.generate(None, None, text="Bees buzz in the quiet lake.", save_motion=tmp_path / "api.npz",
                      controls=Controls(style_edits={"duck": 2.0}, pronunciations={"duck": vector}))  # fmt: skip
    assert np.array_equal(np.load(tmp_path / "cli.npz")["lips"], np.load(tmp_path / "api.npz")["lips"])
    for options, message in (
        ([f"{clip}:duck=2"], "give the clip's transcript (--transcript), or WORD@START-END"),
        ([f"{clip}:goose=2", "--transcript", TEXT], "'goose' is not in the transcript"),
        ([f"{clip}:duck"], "use CLIP:WORD=BETA"),
        ([f"{clip}:duck@9-10=2"], "no frame of"),
        ([f"{clip}:duck=7", "--transcript", TEXT], "outside its range"),
    ):
        capsys.readouterr()
        assert main([*common, "--style-edit-from", *options, "--save-motion", str(tmp_path / "x.npz")]) == 2, options
        assert message in capsys.readouterr().err, options
