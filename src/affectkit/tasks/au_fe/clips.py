"""Torch datasets over AU and FE clips: frame decoding, the clip-consistent augmentation, CLIP
normalisation, paired (FE, AU) items for the shared loop, and a flagged evaluation set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from affectkit.core.errors import DataError
from affectkit.tasks.au_fe.data import AUClip, FEClip, tsn_indices
from affectkit.tasks.au_fe.model import CLIP_MEAN, CLIP_STD


class FrameReader:
    """Decodes image files (PIL) or (video, index) references (OpenCV); optional in-memory cache."""

    def __init__(self, cache: bool = False):
        self.cache: dict | None = {} if cache else None
        self._videos: dict = {}

    def read(self, ref) -> np.ndarray:
        key = str(ref)
        if self.cache is not None and key in self.cache:
            return self.cache[key]
        img = self._decode(ref)
        if self.cache is not None:
            self.cache[key] = img
        return img

    def _decode(self, ref) -> np.ndarray:
        if isinstance(ref, tuple):
            return self._video_frame(*ref)
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(ref) as im:
                return np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise DataError(ref, "frame not found") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(ref, f"cannot decode image ({exc.__class__.__name__})") from None

    def _video_frame(self, video: Path, index: int) -> np.ndarray:
        import cv2

        cap = self._videos.get(video)
        if cap is None:
            cap = cv2.VideoCapture(str(video))
            if not cap.isOpened():
                raise DataError(video, "cannot open video (missing or corrupt)")
            self._videos[video] = cap
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, frame = cap.read()
        if not ok:
            raise DataError(video, f"cannot decode frame {index} (corrupt or truncated video)")
        return frame[:, :, ::-1].copy()


def clip_tensor(frames: list[np.ndarray], size: int, train: bool, augment: bool, brightness: float = 0.0) -> torch.Tensor:
    """[T, 3, size, size], CLIP-normalised. Training: resize to size*256/224, one RandomResizedCrop
    (scale 0.8-1, ratio 0.9-1.1), one horizontal flip and one brightness factor for the whole clip."""
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
    if train and augment:
        big = max(size, int(round(size * 256 / 224)))
        x = F.interpolate(x, size=(big, big), mode="bilinear", align_corners=False, antialias=True)
        area = big * big * float(torch.empty(1).uniform_(0.8, 1.0))
        ratio = float(torch.empty(1).uniform_(0.9, 1.1))
        w = min(big, int(round((area * ratio) ** 0.5)))
        h = min(big, int(round((area / ratio) ** 0.5)))
        top = int(torch.randint(0, big - h + 1, (1,)))
        left = int(torch.randint(0, big - w + 1, (1,)))
        x = x[:, :, top : top + h, left : left + w]
        if float(torch.rand(1)) < 0.5:
            x = x.flip(-1)
        if brightness > 0:
            x = (x * float(torch.empty(1).uniform_(1 - brightness, 1 + brightness))).clamp(0, 1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class AUClipDataset(Dataset):
    def __init__(self, clips: list[AUClip], size: int, train: bool, augment: bool, reader: FrameReader):
        self.clips, self.size, self.train, self.augment, self.reader = clips, size, train, augment, reader

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c = self.clips[i]
        frames = [self.reader.read(f) for f in c.frames]
        return {"au": clip_tensor(frames, self.size, self.train, self.augment),
                "au_label": torch.from_numpy(c.labels), "au_mask": torch.from_numpy(c.mask)}


class FEClipDataset(Dataset):
    def __init__(self, clips: list[FEClip], size: int, n_frames: int, train: bool, augment: bool, reader: FrameReader):
        self.clips, self.size, self.n_frames = clips, size, n_frames
        self.train, self.augment, self.reader = train, augment, reader

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        c = self.clips[i]
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)))) if self.train else None
        idx = tsn_indices(len(c.frames), self.n_frames, self.train, rng)
        frames = [self.reader.read(c.frames[j]) for j in idx]
        return {"fe": clip_tensor(frames, self.size, self.train, self.augment, brightness=0.5),
                "fe_label": torch.tensor(c.label)}


class PairedDataset(Dataset):
    """Item i = ``fe_per_item`` FE clips and ``au_per_item`` AU clips. The epoch is as long as the
    longer source; the shorter one wraps around (it restarts when exhausted)."""

    def __init__(self, fe: FEClipDataset | None, au: AUClipDataset | None, fe_per_item: int = 1, au_per_item: int = 1):
        self.fe, self.au, self.kf, self.ka = fe, au, fe_per_item, au_per_item
        sizes = []
        if fe is not None:
            sizes.append(-(-len(fe) // fe_per_item))
        if au is not None:
            sizes.append(-(-len(au) // au_per_item))
        self.n = max(sizes) if sizes else 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item: dict[str, torch.Tensor] = {}
        if self.fe is not None:
            parts = [self.fe[(i * self.kf + j) % len(self.fe)] for j in range(self.kf)]
            item["fe"] = torch.stack([p["fe"] for p in parts])
            item["fe_label"] = torch.stack([p["fe_label"] for p in parts])
        if self.au is not None:
            parts = [self.au[(i * self.ka + j) % len(self.au)] for j in range(self.ka)]
            for key in ("au", "au_label", "au_mask"):
                item[key] = torch.stack([p[key] for p in parts])
        return item


class EvalDataset(Dataset):
    """FE test clips and AU test clips side by side, with validity flags, so one pass evaluates both
    (and the per-sample outputs have fixed shapes for gathering across processes)."""

    def __init__(self, fe: FEClipDataset | None, au: AUClipDataset | None, n_frames: int, size: int, n_aus: int):
        self.fe, self.au = fe, au
        self.n = max(len(fe) if fe else 0, len(au) if au else 0)
        self.blank_fe = torch.zeros(n_frames, 3, size, size)
        self.blank_au = torch.zeros(n_frames, 3, size, size)
        self.blank_labels = torch.zeros(n_frames, n_aus)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item: dict[str, torch.Tensor] = {}
        if self.fe is not None:
            ok = i < len(self.fe)
            fe = self.fe[i] if ok else {"fe": self.blank_fe, "fe_label": torch.tensor(-1)}
            item.update(fe)
            item["fe_valid"] = torch.tensor(ok)
        if self.au is not None:
            ok = i < len(self.au)
            au = self.au[i] if ok else {"au": self.blank_au, "au_label": self.blank_labels, "au_mask": self.blank_labels}
            item.update(au)
            item["au_valid"] = torch.tensor(ok)
            item["au_index"] = torch.tensor(i if ok else -1)
        return item
