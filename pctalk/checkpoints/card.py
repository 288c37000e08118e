"""Model cards: what a LAC / EMC checkpoint is, what it was trained on and how, its validation figures, the
pretrained files it depends on (by SHA-256) and how to run it.

``pctalk export`` writes ``MODEL_CARD.md`` and its JSON twin ``model_card.json`` into the release folder (one section
per stage the folder holds); ``pctalk card CHECKPOINT`` prints the card of any checkpoint. Everything comes from the
file's ``"pctalk"`` block (:class:`pctalk.checkpoints.info.StageInfo`, with the training record the tasks write).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pctalk.checkpoints.info import StageInfo
from pctalk.checkpoints.styles import style_rows
from pctalk.weights.io import atomic_write, file_sha256

__all__ = ["CARD_FILE", "CARD_JSON", "card_command", "model_card", "render_card", "write_card"]

CARD_FILE = "MODEL_CARD.md"
CARD_JSON = "model_card.json"


def model_card(info: StageInfo, file: str | Path, release: Path | None = None) -> dict[str, Any]:
    """The card of one stage as plain data.

    Args:
        info: the file's block.
        file: the checkpoint (its name and SHA-256 go on the card).
        release: the release folder it sits in (for the command that runs it), if any.
    """
    import pctalk

    file = Path(file)
    training = dict(info.training)
    pretrained = dict(training.get("pretrained", {}))
    if info.audio_encoder.get("sha256"):
        pretrained.setdefault("audio encoder (weights, state-dict hash)", {
            "file": info.audio_encoder.get("file") or "trained with the stage", "sha256": info.audio_encoder["sha256"],
        })  # fmt: skip
    folder = release or file.parent
    flag = "--lac" if info.kind == "lac" else "--emc"
    run = (
        f"pctalk generate {flag} {folder / file.name} --weights pretrained_weights --source face.jpg "
        "--audio speech.wav --out out.mp4"
    )
    if info.kind == "emc":
        run = run.replace(flag, f"--lac {folder / 'lac.pth'} {flag}") + " --emotion happy:all:1.0"
    return {
        "file": file.name,
        "sha256": file_sha256(file),
        "stage": info.kind,
        "target": info.target,
        "keypoints": list(info.keypoints),
        "window": info.window,
        "styles": style_rows(info),
        "sources": list(info.sources),
        "data": dict(training.get("data", {})),
        "training": {
            k: training.get(k) for k in ("task", "steps", "epochs", "seed", "precision", "devices") if k in training
        },
        "settings": training.get("settings", {}),
        "validation": dict(training.get("validation", {})),
        "pretrained": pretrained,
        "run": run,
        "pctalk": getattr(pctalk, "__version__", "unknown"),
        "format_version": info.format_version,
    }


def _cell(value: Any) -> str:
    if value is None:
        return "?"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_card(cards: dict[str, dict[str, Any]]) -> str:
    """``MODEL_CARD.md`` for the stages of a release folder (``{"lac": card, "emc": card}``)."""
    lines = ["# Model card", ""]
    titles = {"lac": "LAC: lip-audio alignment control", "emc": "EMC: emotion control"}
    for kind, card in cards.items():
        lines += [f"## {titles.get(kind, kind)} (`{card['file']}`)", ""]
        lines += [f"- SHA-256: `{card['sha256']}`", f"- Predicts: {card['target']} keypoints {card['keypoints']}, "
                  f"windows of {card['window']} frames", f"- pctalk {card['pctalk']}, checkpoint format "
                  f"{card['format_version']}"]  # fmt: skip
        if card.get("sources"):
            lines.append(f"- Emotion sources stored with it: {', '.join(card['sources'])}")
        data = card.get("data") or {}
        lines += ["", "### Data", ""]
        if data:
            lines += [f"- Datasets: {', '.join(data.get('datasets', [])) or '?'}; {data.get('identities', '?')} "
                      f"identities; {data.get('train_clips', '?')} training clips, {data.get('train_frames', '?')} "
                      f"frames ({_cell(data.get('train_hours'))} h)",
                      f"- Shard folders: {', '.join(data.get('roots', []))}"]  # fmt: skip
            lines += [f"- Splits of {root}: SHA-256 `{sha}`" for root, sha in data.get("splits_sha256", {}).items()]
        else:
            lines.append("- Not recorded (a file written before pctalk 0.3, or an official release file).")
        lines += ["", "| style id | identity | dataset | clips | hours |", "|---|---|---|---|---|"]
        lines += [f"| {r['id']} | {_cell(r['identity'])} | {_cell(r['dataset'])} | {_cell(r['clips'])} | "
                  f"{_cell(r['hours'])} |" for r in card["styles"]]  # fmt: skip
        training = card.get("training") or {}
        lines += ["", "### Training", ""]
        if training:
            lines.append("- " + ", ".join(f"{k}: {_cell(v)}" for k, v in training.items()))
            model = (card.get("settings") or {}).get("model", {})
            if model:
                lines.append("- Task settings: `" + json.dumps(model, sort_keys=True) + "`")
        else:
            lines.append("- Not recorded.")
        validation = card.get("validation") or {}
        lines += ["", "### Validation", ""]
        lines += [f"- {k}: {_cell(v)}" for k, v in validation.items()] or ["- Not recorded."]
        lines += ["", "### Pretrained files it depends on", ""]
        lines += [f"- {k}: `{v.get('file')}` (SHA-256 `{v.get('sha256')}`)" for k, v in card["pretrained"].items()]
        lines += ["", "### How to run it", "", "```bash", card["run"], "```", ""]
    return "\n".join(lines)


def write_card(release: Path, info: StageInfo, file: Path) -> Path:
    """Add ``file``'s stage to ``release/model_card.json`` and rewrite ``release/MODEL_CARD.md`` (both atomically)."""
    release = Path(release)
    json_path = release / CARD_JSON
    cards = json.loads(json_path.read_text()) if json_path.is_file() else {}
    cards[info.kind] = model_card(info, file, release)
    cards = {k: cards[k] for k in ("lac", "emc") if k in cards}
    atomic_write(json_path, lambda tmp: tmp.write_text(json.dumps(cards, indent=1, ensure_ascii=False)))
    return atomic_write(release / CARD_FILE, lambda tmp: tmp.write_text(render_card(cards)))


def card_command(checkpoint: Path) -> int:
    """Print the model card of a LAC or EMC checkpoint (data, training, validation figures, pretrained files).

    Args:
        checkpoint: a checkpoint of `pctalk fit` (.ckpt), or a lac.pth / emc.pth of pctalk or the official release.
    """
    from pctalk.checkpoints.stages import load_stage, read

    found = read(checkpoint)
    info = found.info if found.info is not None else load_stage(checkpoint).info
    print(render_card({info.kind: model_card(info, checkpoint)}))
    return 0


card_command.positional = True  # type: ignore[attr-defined]  # pctalk card CHECKPOINT
