"""Dims an export folder's own files give: the image size and channels, audio frames and mel bins,
and a text length where a model has a natural one, read from the config.json and
preprocessor_config.json that Optimum (and save_pretrained) write beside model.onnx.

The graph names an input's axes (Optimum: pixel_values [batch_size, num_channels, height, width]);
this module finds which config key sizes which axis, by the input's name and the axis' position,
never by the dim's name alone (Whisper's decoder also has an `encoder_sequence_length`, which is
not the encoder's frame count). Each value carries its file and key, and the report names it.

    pixel_values   [batch, channels, height, width]  config num_channels, image_size (also in
                   vision_config); else preprocessor crop_size, then size (height/width,
                   shortest_edge/longest_edge)
    input_features [batch, mel bins, frames]          Whisper (a config with num_mel_bins):
                   num_mel_bins, and 2 x max_source_positions frames (its convolutions halve
                   them), else the preprocessor's nb_max_frames
    input_ids, attention_mask, position_ids [batch, length]
                   only for a model with a text and a vision tower (CLIP, SigLIP: text padded to
                   a fixed length): config text_config.max_position_embeddings
    the batch axis of those inputs: 1, memlint's default batch (as for an LLM's scenario)

Known limits: raw-audio inputs (Wav2Vec2's input_values) have no natural length and stay for
--dim; a preprocessor's shortest/longest edge is the largest image it makes, not every image.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from memlint.analysis.hfconfig import read_json_object

CONFIG = "config.json"
PREPROCESSOR = "preprocessor_config.json"
DEFAULT_BATCH = 1
BATCH_SOURCE = "memlint's default batch"
TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids", "token_type_ids")


@dataclass(frozen=True)
class ExportDim:
    """A dim's value and where it came from ("config.json vision_config.image_size")."""

    name: str
    value: int
    source: str


def export_dims(
    model_path: str, inputs: Mapping[str, tuple[str | None, ...]]
) -> tuple[ExportDim, ...]:
    """The dims of `inputs` (input name -> each axis' symbolic name, None for a fixed one) that
    config.json / preprocessor_config.json beside the model file `model_path` give; () without
    those files or for inputs they say nothing about. The first value for a name wins."""
    path = Path(model_path)
    if not model_path or not path.is_file():
        return ()
    config = _read(path.parent / CONFIG)
    preprocessor = _read(path.parent / PREPROCESSOR)
    if not config and not preprocessor:
        return ()
    found: dict[str, ExportDim] = {}

    def give(axes: tuple[str | None, ...], axis: int, value: tuple[int, str] | None) -> None:
        name = axes[axis] if axis < len(axes) else None
        if name is not None and value is not None and name not in found:
            found[name] = ExportDim(name, value[0], value[1])

    for name, axes in inputs.items():
        sizes: list[tuple[int, tuple[int, str] | None]] = []
        if name == "pixel_values" and len(axes) == 4:
            height, width = _image_size(config, preprocessor)
            sizes = [(1, _key(config, "num_channels", vision=True)), (2, height), (3, width)]
        elif name == "input_features" and len(axes) == 3 and _key(config, "num_mel_bins"):
            sizes = [(1, _key(config, "num_mel_bins")), (2, _frames(config, preprocessor))]
        elif name in TEXT_INPUTS and len(axes) == 2 and _dual_encoder(config):
            sizes = [(1, _key(config, "max_position_embeddings", scope="text_config"))]
        else:
            continue
        for axis, value in sizes:
            give(axes, axis, value)
        if any(value is not None for _, value in sizes):  # a recognised input: batch 1
            give(axes, 0, (DEFAULT_BATCH, BATCH_SOURCE))
    return tuple(found[name] for name in sorted(found))


def _read(path: Path) -> dict:
    return (read_json_object(path) or {}) if path.is_file() else {}


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _key(
    config: dict, key: str, *, vision: bool = False, scope: str | None = None
) -> tuple[int, str] | None:
    """config[key] (first in vision_config when `vision`, or only in `scope`) and its label."""
    scopes = [scope] if scope else (["vision_config", None] if vision else [None])
    for name in scopes:
        holder = config.get(name) if name else config
        if isinstance(holder, dict) and _whole(holder.get(key)):
            return holder[key], f"{CONFIG} {name + '.' if name else ''}{key}"
    return None


def _image_size(
    config: dict, preprocessor: dict
) -> tuple[tuple[int, str] | None, tuple[int, str] | None]:
    """(height, width) with their labels: the config's image_size (an int, or [height, width]),
    else the preprocessor's crop_size, then its size."""
    for name in ("vision_config", None):
        holder = config.get(name) if name else config
        size = holder.get("image_size") if isinstance(holder, dict) else None
        label = f"{CONFIG} {name + '.' if name else ''}image_size"
        if _whole(size):
            return (size, label), (size, label)
        if isinstance(size, list) and len(size) == 2 and all(map(_whole, size)):
            return (size[0], label), (size[1], label)
    for key in ("crop_size", "size"):
        size = preprocessor.get(key)
        label = f"{PREPROCESSOR} {key}"
        if _whole(size):
            return (size, label), (size, label)
        if not isinstance(size, dict):
            continue
        if _whole(size.get("height")) and _whole(size.get("width")):
            return (size["height"], f"{label}.height"), (size["width"], f"{label}.width")
        short, long = _whole(size.get("shortest_edge")), _whole(size.get("longest_edge"))
        if short:
            wide = (long, f"{label}.longest_edge") if long else (short, f"{label}.shortest_edge")
            return (short, f"{label}.shortest_edge"), wide
    return None, None


def _frames(config: dict, preprocessor: dict) -> tuple[int, str] | None:
    """Whisper's input frames: 2 x max_source_positions (two convolutions, the second of stride
    2, make the encoder's positions), else the preprocessor's nb_max_frames."""
    positions = _key(config, "max_source_positions")
    if positions:
        return 2 * positions[0], f"2 x {positions[1]}"
    frames = _whole(preprocessor.get("nb_max_frames"))
    return (frames, f"{PREPROCESSOR} nb_max_frames") if frames else None


def _dual_encoder(config: dict) -> bool:
    """A text and a vision tower (CLIP, SigLIP): the text is padded to its position table."""
    return isinstance(config.get("text_config"), dict) and isinstance(
        config.get("vision_config"), dict
    )
