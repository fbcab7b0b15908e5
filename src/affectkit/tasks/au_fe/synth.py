"""The embedded benchmark: procedurally rendered face clips with known AUs and expressions.

Each AU moves a facial part with onset-apex-offset dynamics (brows, lids, cheeks, lips, chin) over
varied identities (face shape, skin tone, feature placement), lighting gradients, head jitter and
sensor noise. Two heterogeneous sources, with disjoint identities and different capture styles:

- an AU source in the BP4D layout (frame-level occurrence labels, 9 = not coded on a few frames,
  non-contiguous frame numbers with gaps), where AUs co-occur as in spontaneous data (episodes of
  expression-like AU groups plus independent single-AU events) at BP4D's per-AU occurrence rates;
- an FE source in the DFEW layout (clip labels, 5 split files; clips trimmed around the expression),
  where each clip shows one expression built from its FACS AU set (each AU with probability 0.8)
  plus extra AUs (10 % each), with imbalanced classes and neutral clips carrying only extras.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from affectkit.tasks.au_fe import facs
from affectkit.tasks.au_fe.data import BP4D_FOLDS, DFEW_LABELS

AUS = facs.au_vocabulary("bp4d")
EXPRESSIONS = facs.expression_vocabulary("basic7")
EXPRESSION_PROBS = {"happiness": 0.2, "sadness": 0.16, "neutral": 0.2, "anger": 0.16, "surprise": 0.12,
                    "disgust": 0.06, "fear": 0.10}
# occurrence rate of each AU over BP4D's coded frames, as reported in the AU-detection literature
# (e.g. the class weights of JAA-Net); the AU source matches these marginals, so strict F1 at 0.5 has
# the real data's base rates
BP4D_OCCURRENCE = {1: 0.211, 2: 0.170, 4: 0.203, 6: 0.462, 7: 0.548, 10: 0.594, 12: 0.559, 14: 0.466, 15: 0.169,
                   17: 0.344, 23: 0.166, 24: 0.152}
# quick data: 18 subjects, 6 in each official BP4D test fold (so the real subject-exclusive partition applies)
AU_SUBJECTS = ["F001", "F002", "F008", "M001", "M004", "M007", "F003", "F005", "F011", "M002", "M005", "M010",
               "F004", "F006", "F007", "M003", "M006", "M009"]
# full data: BP4D's 41 subjects, spelled as the released directories (F001 ... M018)
BP4D_SUBJECTS = [f"{s[0]}{int(s[1:]):03d}" for fold in BP4D_FOLDS.values() for s in fold]
# the two sources' sizes, quick (tests) and full (the bench). Full AU: BP4D's layout (41 subjects x
# 8 tasks), 21k frames, about 10 AU frames per FE clip as BP4D has against DFEW (146.8k frames,
# 12k-16k clips); at 18 subjects x 4 tasks it had a quarter of that once the FE source grew. Full
# FE: 2000 clips over 100 identities, so an identity-exclusive test fold holds about 400 clips (at 600
# clips it held 115, and one clip of the rarest class moved UAR by 2.9 points, more than the FE gate).
SIZES = {
    "quick": {"au": {"subjects": AU_SUBJECTS, "tasks": 2, "frames": 40}, "fe": {"n_clips": 150, "n_identities": 40}},
    "full": {"au": {"subjects": BP4D_SUBJECTS, "tasks": 8, "frames": 64}, "fe": {"n_clips": 2000, "n_identities": 100}},
}


def _identity(rng: np.random.Generator, style: str) -> dict:
    skin = rng.uniform([150, 100, 80], [235, 185, 160])
    if style == "fe":  # "in the wild" movie frames: more varied and cluttered than the lab source
        bg = rng.uniform(20, 235, size=3)
    else:
        bg = np.array([200.0, 200.0, 205.0]) + rng.normal(0, 6, size=3)
    return {
        "skin": skin, "bg": bg,
        "face_w": rng.uniform(0.32, 0.40), "face_h": rng.uniform(0.40, 0.47),
        "cx": rng.uniform(0.47, 0.53), "cy": rng.uniform(0.49, 0.55),
        "eye_dx": rng.uniform(0.13, 0.17), "eye_y": rng.uniform(0.40, 0.44),
        "brow_gap": rng.uniform(0.07, 0.10), "brow_thick": rng.uniform(1.2, 2.2),
        "mouth_w": rng.uniform(0.10, 0.15), "mouth_y": rng.uniform(0.70, 0.75),
        "lip": rng.uniform(0.012, 0.022), "feature": rng.uniform(30, 80),
    }


def render(ident: dict, au: dict[int, float], size: int, rng: np.random.Generator, light: float, gain: float,
           noise: float, shift: tuple[float, float], points: list | None = None) -> np.ndarray:
    """One RGB frame (uint8). ``au`` maps AU number -> intensity in [0, 1]. When ``points`` is a list,
    the 14 facial landmarks drawn (brow ends, eye lids, mouth corners, lip middles) are appended to it
    in image coordinates normalised to [0, 1]."""
    import cv2

    ss = 4  # supersampling for smooth, sub-pixel motion
    s = size * ss
    img = np.empty((s, s, 3), np.float32)
    img[:] = ident["bg"]
    a = {k: float(au.get(k, 0.0)) for k in AUS}
    cx, cy = (ident["cx"] + shift[0]) * s, (ident["cy"] + shift[1]) * s

    def P(x: float, y: float) -> tuple[int, int]:
        return int(round((cx / s + x - 0.5) * s * 16)), int(round((cy / s + y - 0.5) * s * 16))

    def line(p, q, color, width):
        cv2.line(img, P(*p), P(*q), color, max(1, int(round(width * ss))), cv2.LINE_AA, 4)

    dark = tuple(float(v) for v in np.clip(ident["skin"] - ident["feature"] * 1.6, 0, 255))
    skin = tuple(float(v) for v in ident["skin"])
    cv2.ellipse(img, P(0.5, 0.5), (int(ident["face_w"] * s * 16), int(ident["face_h"] * s * 16)), 0, 0, 360,
                skin, -1, cv2.LINE_AA, 4)
    ey, edx, mw, my = ident["eye_y"], ident["eye_dx"], ident["mouth_w"], ident["mouth_y"]

    # cheeks (AU6): raised, shaded cheeks below the eyes
    if a[6] > 0:
        cheek = tuple(float(v) for v in np.clip(ident["skin"] - np.array([10, 45, 45]) * a[6], 0, 255))
        for side in (-1, 1):
            cv2.ellipse(img, P(0.5 + side * edx, ey + 0.085 - 0.02 * a[6]), (int(0.07 * s * 16), int(0.04 * s * 16)),
                        0, 0, 360, cheek, -1, cv2.LINE_AA, 4)
    # eyes: lid tightener (AU7) and cheek raiser (AU6) narrow the aperture
    open_h = 0.028 * (1 - 0.6 * a[7]) * (1 - 0.3 * a[6])
    for side in (-1, 1):
        cv2.ellipse(img, P(0.5 + side * edx, ey), (int(0.055 * s * 16), max(16, int(open_h * s * 16))), 0, 0, 360,
                    (245.0, 245.0, 245.0), -1, cv2.LINE_AA, 4)
        cv2.circle(img, P(0.5 + side * edx, ey), int(0.018 * s * 16), (40.0, 30.0, 25.0), -1, cv2.LINE_AA, 4)
        if a[7] > 0:  # tightened lower lid line
            line((0.5 + side * (edx - 0.05), ey + open_h + 0.004), (0.5 + side * (edx + 0.05), ey + open_h + 0.004),
                 dark, 0.6 * a[7] + 0.2)
    # brows: AU1 raises inner ends, AU2 outer ends, AU4 lowers and draws them together (+ furrow)
    by = ey - 0.085
    for side in (-1, 1):
        inner = (0.5 + side * (ident["brow_gap"] - 0.025 * a[4]), by - 0.05 * a[1] + 0.035 * a[4])
        outer = (0.5 + side * (ident["brow_gap"] + 0.15), by - 0.05 * a[2] + 0.02 * a[4])
        line(inner, outer, dark, ident["brow_thick"])
    if a[4] > 0:
        for dx in (-0.012, 0.012):
            line((0.5 + dx, by - 0.01), (0.5 + dx, by + 0.04), dark, 0.8 * a[4])
    # nose, and nasolabial folds for the upper lip raiser (AU10)
    line((0.5, ey + 0.02), (0.5, my - 0.1), dark, 0.7)
    if a[10] > 0:
        for side in (-1, 1):
            line((0.5 + side * 0.05, my - 0.1), (0.5 + side * (mw + 0.01), my - 0.02), dark, 1.0 * a[10])
    # mouth: corners pulled up (AU12) or down (AU15), lips tightened (AU23) or pressed (AU24)
    corner_y = my - 0.05 * a[12] + 0.045 * a[15]
    half_w = mw * (1 + 0.25 * a[12] - 0.2 * a[23])
    lip = ident["lip"] * (1 - 0.7 * a[23]) * (1 - 0.5 * a[24])
    upper_mid = my - lip - 0.025 * a[10]
    lower_mid = my + lip - 0.012 * a[17] - 0.01 * a[24]
    lip_color = tuple(float(v) for v in np.clip(ident["skin"] * np.array([0.85, 0.55, 0.55]) - 20 * a[24], 0, 255))
    pts = []
    for t in np.linspace(-1, 1, 13):
        pts.append((0.5 + t * half_w, corner_y + (upper_mid - corner_y) * (1 - t * t)))
    for t in np.linspace(1, -1, 13):
        pts.append((0.5 + t * half_w, corner_y + (lower_mid - corner_y) * (1 - t * t)))
    cv2.fillPoly(img, [np.array([P(*p) for p in pts], np.int32)], lip_color, cv2.LINE_AA, 4)
    line((0.5 - half_w, corner_y), (0.5 + half_w, corner_y), dark, 0.6 + 0.8 * a[24])
    if a[14] > 0:  # dimples beside the corners
        for side in (-1, 1):
            cv2.circle(img, P(0.5 + side * (half_w + 0.025), corner_y), int(0.009 * s * 16 * (0.5 + a[14])), dark,
                       -1, cv2.LINE_AA, 4)
    if a[17] > 0:  # chin raiser: a bump line below the lower lip
        cv2.ellipse(img, P(0.5, my + 0.1), (int(0.06 * s * 16), int(0.02 * s * 16)), 0, 180, 360, dark,
                    max(1, int(round(1.2 * a[17] * ss))), cv2.LINE_AA, 4)

    if points is not None:
        ox, oy = cx / s - 0.5, cy / s - 0.5
        marks = []
        for side in (-1, 1):
            marks += [(0.5 + side * (ident["brow_gap"] - 0.025 * a[4]), by - 0.05 * a[1] + 0.035 * a[4]),
                      (0.5 + side * (ident["brow_gap"] + 0.15), by - 0.05 * a[2] + 0.02 * a[4]),
                      (0.5 + side * edx, ey - open_h), (0.5 + side * edx, ey + open_h)]
        marks += [(0.5 - half_w, corner_y), (0.5 + half_w, corner_y), (0.5, corner_y + (upper_mid - corner_y)),
                  (0.5, corner_y + (lower_mid - corner_y)), (0.5, my + 0.1), (0.5, ey + 0.02)]
        points.extend((x + ox, y + oy) for x, y in marks)

    # lighting gradient, gain, downsampling, sensor noise
    xs = np.linspace(-0.5, 0.5, s, dtype=np.float32)
    img *= (1 + light * xs)[None, :, None] * gain
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    img += rng.normal(0, noise, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def envelope(n: int, onset: int, apex: int, offset: int, start: int, peak: float) -> np.ndarray:
    """Onset ramp, apex plateau, offset ramp."""
    env = np.zeros(n, np.float32)
    for i in range(n):
        t = i - start
        if 0 <= t < onset:
            env[i] = (t + 1) / onset
        elif onset <= t < onset + apex:
            env[i] = 1.0
        elif onset + apex <= t < onset + apex + offset:
            env[i] = 1 - (t - onset - apex + 1) / (offset + 1)
    return env * peak


def _event(n: int, rng: np.random.Generator, start: int) -> np.ndarray:
    onset, apex, offset = (int(x) for x in rng.integers([2, 3, 2], [6, 16, 6]))
    return envelope(n, onset, apex, offset, start, rng.uniform(0.6, 1.0))


def au_track(n: int, rng: np.random.Generator, prior: facs.Prior) -> np.ndarray:
    """[n, A] intensities: expression-like AU episodes (co-occurrence as in spontaneous data), then
    independent single-AU events until each AU's occurrence (intensity >= 0.5) reaches its BP4D rate."""
    inten = np.zeros((n, len(AUS)), np.float32)
    t = int(rng.integers(0, 6))
    while t < n:
        expr = rng.choice([e for e in EXPRESSIONS if e != "neutral"])
        members = [AUS.index(x) for x in sorted(prior.sets[expr]) if rng.random() < 0.8]
        onset, apex, offset = (int(x) for x in rng.integers([2, 3, 2], [6, 12, 6]))
        for j in members:
            env = envelope(n, onset, apex, offset, t + int(rng.integers(-1, 2)), rng.uniform(0.6, 1.0))
            inten[:, j] = np.maximum(inten[:, j], env)
        t += onset + apex + offset + int(rng.integers(8, 40))
    for j, au in enumerate(AUS):
        target = BP4D_OCCURRENCE[au] * rng.uniform(0.7, 1.3)  # subjects and tasks differ
        for _ in range(n):
            now = float((inten[:, j] >= 0.5).mean())
            more = np.maximum(inten[:, j], _event(n, rng, int(rng.integers(-4, n))))
            if abs(float((more >= 0.5).mean()) - target) < abs(now - target):  # else try another event
                inten[:, j] = more
    return inten


def write_au_source(root: Path, seed: int, size: int, prior: facs.Prior, subjects: list[str], tasks: int,
                    frames: int) -> dict:
    rng = np.random.default_rng([seed, 1])
    label_dir = root / "AUCoding" / "AU_OCC"
    label_dir.mkdir(parents=True)
    n_frames, n_not_coded = 0, 0
    for subject in subjects:
        ident = _identity(rng, "au")
        for task in range(1, tasks + 1):
            inten = au_track(frames, rng, prior)
            start = int(rng.integers(1, 400))
            ids = start + np.arange(frames)
            gap_at = int(rng.integers(frames // 3, 2 * frames // 3))
            ids[gap_at:] += int(rng.integers(2, 5))  # a gap in the frame numbers, as in BP4D's coded segments
            seq_dir = root / "Sequences" / subject / f"T{task}"
            seq_dir.mkdir(parents=True)
            light, gain, noise = rng.uniform(-0.2, 0.2), rng.uniform(0.9, 1.1), rng.uniform(2, 5)
            head = rng.normal(0, 0.01, size=2)
            rows = []
            for k, fid in enumerate(ids):
                jitter = tuple(head + rng.normal(0, 0.004, size=2))
                img = render(ident, dict(zip(AUS, inten[k], strict=True)), size, rng, light, gain, noise, jitter)
                _save_jpg(seq_dir / f"{fid:04d}.jpg", img)
                occ = (inten[k] >= 0.5).astype(int)
                if rng.random() < 0.02:  # a few frames with an AU not coded
                    occ[int(rng.integers(len(AUS)))] = 9
                    n_not_coded += 1
                rows.append([int(fid)] + [int(occ[AUS.index(a)]) if a in AUS else 0 for a in range(1, 40)])
                n_frames += 1
            with open(label_dir / f"{subject}_T{task}.csv", "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["0"] + [str(a) for a in range(1, 40)])
                w.writerows(rows)
    return {"au_subjects": len(subjects), "au_frames": n_frames, "au_not_coded": n_not_coded}


def write_fe_source(root: Path, seed: int, size: int, prior: facs.Prior, n_clips: int, n_identities: int) -> dict:
    rng = np.random.default_rng([seed, 2])
    identities = [_identity(rng, "fe") for _ in range(n_identities)]
    names = list(EXPRESSION_PROBS)
    probs = np.array([EXPRESSION_PROBS[e] for e in names])
    clip_root = root / "Clip" / "clip_224x224"
    labels = []
    for c in range(1, n_clips + 1):
        expr = str(rng.choice(names, p=probs / probs.sum()))
        n = int(rng.integers(16, 33))
        inten = np.zeros((n, len(AUS)), np.float32)
        # clips are cut around the expression, as DFEW's annotators trimmed them: a short onset, an
        # apex over most of the clip, a short (or no) offset
        onset, offset, start = int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(0, 3))
        apex = max(4, n - start - onset - offset - int(rng.integers(0, 4)))
        for j, au in enumerate(AUS):
            if au in prior.sets[expr] and rng.random() < 0.8:
                peak = rng.uniform(0.5, 1.0)
            elif rng.random() < 0.1:
                peak = rng.uniform(0.3, 0.9)
            else:
                continue
            inten[:, j] = envelope(n, onset, apex, offset, start + int(rng.integers(-1, 2)), peak)
        ident_id = int(rng.integers(len(identities)))
        ident = identities[ident_id]
        light, gain, noise = rng.uniform(-0.5, 0.5), rng.uniform(0.75, 1.2), rng.uniform(3, 9)
        head = rng.normal(0, 0.02, size=2)
        vid = f"{c:05d}"
        clip_dir = clip_root / vid
        clip_dir.mkdir(parents=True)
        for k in range(n):
            jitter = tuple(head + rng.normal(0, 0.006, size=2))
            img = render(ident, dict(zip(AUS, inten[k], strict=True)), size, rng, light, gain, noise, jitter)
            _save_jpg(clip_dir / f"{vid}_{k + 1:05d}.jpg", img)
        labels.append((vid, DFEW_LABELS.index(expr) + 1, ident_id))
    # 5 folds, identity-exclusive (movies do not repeat across DFEW's folds either)
    fold_of_ident = {i: i % 5 + 1 for i in range(len(identities))}
    split_root = root / "EmoLabel_DataSplit"
    for fold in range(1, 6):
        for split in ("train", "test"):
            rows = [(v, lab) for v, lab, i in labels if (fold_of_ident[i] == fold) == (split == "test")]
            out = split_root / f"{split}(single-labeled)" / f"set_{fold}.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "w", newline="") as fh:
                w = csv.writer(fh)
                w.writerow(["video_name", "label"])
                w.writerows(rows)
    return {"fe_clips": n_clips, "fe_identities": len(identities)}


def _save_jpg(path: Path, img: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(img).save(path, quality=92)


def make(out: Path, seed: int, quick: bool, size: int = 48) -> dict:
    prior = facs.prior("bp4d", "basic7")
    sizes = SIZES["quick" if quick else "full"]
    summary = {"image_size": size}
    summary.update(write_au_source(out / "au", seed, size, prior, **sizes["au"]))
    summary.update(write_fe_source(out / "fe", seed, size, prior, **sizes["fe"]))
    (out / "README.json").write_text(json.dumps({
        "what": "affectkit au-fe embedded benchmark: au/ in the BP4D layout, fe/ in the DFEW layout",
        "seed": seed, "quick": quick, **summary}, indent=2))
    return summary
