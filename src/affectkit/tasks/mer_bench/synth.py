"""The embedded benchmark: generated memes in the released MER-Bench layout with known edits.

Each meme is a drawn scene (one panel or a 2x2 grid; a face or an animal, props, a caption) whose
mood is carried by cues a reader can see: palette (cool and dark vs warm and bright), mouth shape,
brows, tears and tension marks, and the caption wording. Four "editing systems" are written:

* ``full-edit``    the scene re-drawn in the positive mood with the target caption ``pos_txt``;
* ``caption-only`` the same negative scene, only the caption replaced by ``pos_txt``;
* ``identity``     the source image unchanged;
* ``blank``        a uniform image of the same size.

Known ground truth: any sensible judge ranks full-edit > caption-only > identity > blank on affect
and overall scores. Each system folder gets a ``captions.jsonl`` with the caption it wrote.
"""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

from affectkit.core.runs import atomic_write_bytes, atomic_write_json, atomic_write_text
from affectkit.tasks.mer_bench.data import CAPTIONS_FILE, EDITED, ORIGINAL
from affectkit.tasks.mer_bench.schema import TARGET_OF

SYSTEMS: tuple[str, ...] = ("full-edit", "caption-only", "identity", "blank")


def bench_size(quick: bool) -> int:
    """Memes in the embedded benchmark of ``data make`` and ``bench`` (``--quick``: fewer)."""
    return 16 if quick else 96

EXPECTED_RANKING: tuple[str, ...] = SYSTEMS

SITUATIONS = (
    "monday meeting", "exam week", "rainy commute", "traffic jam", "broken laptop", "group project",
    "tax return", "dentist visit", "long queue", "power outage", "flight delay", "code review",
)  # fmt: skip
SUBJECTS = ("office worker", "student", "cat", "dog", "commuter", "programmer")

NEG_TEXT = {
    "sad": ["when the {s} ruins everything and nobody cares", "me crying alone after the {s}, so sad and hopeless"],
    "angry": ["I hate the {s}, this is terrible and stupid", "furious about the {s} again, worst day ever"],
    "tense": ["panic mode: the {s} is a disaster waiting to happen", "so stressed and scared about the {s}"],
    "bored": ["another dull {s}, so boring and pointless", "the {s} is tedious, nothing ever happens"],
}
NEUTRAL_TEXT = ["me during the {s}", "the {s} again", "nobody: / me at the {s}"]
POSITIVE_SURFACE = ["great, another {s}. love it", "best {s} ever, so fun"]
POS_TXT = {
    "happy": ["\u201cGlad the {s} brings us together, what a great day!\u201d", "\u201cThe {s} is over and I feel wonderful!\u201d"],
    "calm": ["\u201cThe {s} is fine, I'm calm and handling it well.\u201d", "\u201cDeep breath: the {s} is okay, all good.\u201d"],
    "relaxed": ["\u201cBreathe, the {s} is under control and I feel good.\u201d", "\u201cRelax, the {s} will be fine, enjoy the moment.\u201d"],
    "excited": ["\u201cCan't wait for the {s}, this will be fun!\u201d", "\u201cThe {s} is an adventure, let's go, amazing!\u201d"],
}
VISUAL_TYPES = (("Template_StylizedMeme", 0.5), ("Object_Animal_Dominant", 0.2), ("Photo_RealPerson", 0.2), ("Cartoon_Anime", 0.1))
POLARITIES = (("Negative", 0.6), ("Neutral", 0.33), ("Positive", 0.07))
EMOTION_WEIGHTS = (("sad", 0.32), ("tense", 0.32), ("angry", 0.3), ("bored", 0.06))

SIZE = 256
GUTTER = 8


def _pick(rng: random.Random, weighted: tuple[tuple[str, float], ...]) -> str:
    names, weights = zip(*weighted, strict=False)
    return rng.choices(names, weights=weights, k=1)[0]


def _font(size: int) -> Any:
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if len(cur) + len(w) + 1 > width and cur:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    if cur:
        lines.append(cur)
    return lines[:4]


def _panel(draw: Any, box: tuple[int, int, int, int], scene: dict[str, Any], mood: str, k: int) -> None:
    """Draw one panel of the scene into ``box`` in the given mood ("neg" or "pos")."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    r = random.Random(scene["seed"] * 31 + k)
    if mood == "neg":
        base = {"sad": (55, 70, 115), "angry": (110, 45, 45), "tense": (70, 60, 90), "bored": (105, 105, 105)}[scene["det_emo"]]
    else:
        base = {"happy": (245, 200, 90), "calm": (150, 215, 190), "relaxed": (170, 220, 150), "excited": (255, 160, 80)}[scene["tgt_emo"]]
    jitter = r.randint(-12, 12)
    bg = tuple(max(0, min(255, c + jitter)) for c in base)
    draw.rectangle(box, fill=bg)
    if scene["visual_type"] == "Photo_RealPerson":  # texture stands in for a photo
        for _ in range(60):
            px, py = x0 + r.randrange(w), y0 + r.randrange(h)
            shade = tuple(max(0, min(255, c + r.randint(-30, 30))) for c in bg)
            draw.rectangle((px, py, px + 3, py + 3), fill=shade)
    # props: same geometry in both moods, lighter in the positive one
    px, py = x0 + int(w * 0.08), y0 + int(h * 0.62)
    prop = (40, 40, 50) if mood == "neg" else (250, 250, 235)
    draw.rectangle((px, py, px + int(w * 0.22), py + int(h * 0.14)), fill=prop, outline=(20, 20, 20))
    sx, sy, sr = x0 + int(w * 0.82), y0 + int(h * 0.16), max(4, int(w * 0.08))
    sky = (90, 90, 100) if mood == "neg" else (255, 235, 60)
    draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=sky)
    # the character
    cx, cy = x0 + w // 2 + r.randint(-w // 10, w // 10), y0 + int(h * 0.45)
    fr = int(min(w, h) * 0.22)
    skin = (225, 190, 160) if scene["visual_type"] != "Object_Animal_Dominant" else (170, 130, 90)
    if mood == "neg":
        skin = tuple(int(c * 0.8) for c in skin)
    outline_w = 3 if scene["visual_type"] == "Cartoon_Anime" else 1
    if scene["visual_type"] == "Object_Animal_Dominant":  # ears
        draw.polygon([(cx - fr, cy - fr // 2), (cx - fr // 2, cy - fr - fr // 2), (cx - fr // 4, cy - fr)], fill=skin, outline=(0, 0, 0))
        draw.polygon([(cx + fr, cy - fr // 2), (cx + fr // 2, cy - fr - fr // 2), (cx + fr // 4, cy - fr)], fill=skin, outline=(0, 0, 0))
    draw.ellipse((cx - fr, cy - fr, cx + fr, cy + fr), fill=skin, outline=(0, 0, 0), width=outline_w)
    er = max(2, fr // (4 if scene["visual_type"] == "Cartoon_Anime" else 6))
    for ex in (cx - fr // 2.5, cx + fr // 2.5):
        draw.ellipse((ex - er, cy - fr // 4 - er, ex + er, cy - fr // 4 + er), fill=(20, 20, 20))
    mouth = (cx - fr // 2, cy + fr // 6, cx + fr // 2, cy + fr // 6 + fr // 2)
    if mood == "pos":
        draw.arc(mouth, start=10, end=170, fill=(120, 20, 20), width=3)
    elif scene["det_emo"] == "bored":
        draw.line((cx - fr // 3, cy + fr // 2, cx + fr // 3, cy + fr // 2), fill=(40, 20, 20), width=3)
    else:
        low = (cx - fr // 2, cy + fr // 3, cx + fr // 2, cy + fr // 3 + fr // 2)
        draw.arc(low, start=200, end=340, fill=(40, 20, 20), width=3)
    if mood == "neg" and scene["det_emo"] == "angry":
        draw.line((cx - fr // 1.6, cy - fr // 2, cx - fr // 5, cy - fr // 3), fill=(0, 0, 0), width=3)
        draw.line((cx + fr // 1.6, cy - fr // 2, cx + fr // 5, cy - fr // 3), fill=(0, 0, 0), width=3)
    if mood == "neg" and scene["det_emo"] == "sad":
        draw.ellipse((cx - fr // 2.5 - 2, cy, cx - fr // 2.5 + 3, cy + 9), fill=(120, 170, 255))
    if mood == "neg" and scene["det_emo"] == "tense":
        for j in range(3):
            tx = cx + fr + 4 + 5 * j
            draw.line((tx, cy - fr, tx + 3, cy - fr // 2, tx, cy), fill=(240, 240, 240), width=2)


def render_meme(scene: dict[str, Any], mood: str, caption: str) -> bytes:
    """PNG bytes of the meme in ``mood`` with ``caption`` drawn in its caption region."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    template = scene["visual_type"] == "Template_StylizedMeme"
    top = 40 if template else 0
    bottom = SIZE - 52
    if scene["layout_type"] == "MultiPanel_Meme":
        half_w = (SIZE - GUTTER) // 2
        half_h = (bottom - top - GUTTER) // 2
        boxes = [
            (0, top, half_w, top + half_h),
            (half_w + GUTTER, top, SIZE - 1, top + half_h),
            (0, top + half_h + GUTTER, half_w, bottom),
            (half_w + GUTTER, top + half_h + GUTTER, SIZE - 1, bottom),
        ]
    else:
        boxes = [(0, top, SIZE - 1, bottom)]
    for k, box in enumerate(boxes):
        _panel(draw, box, scene, mood, k)
    # caption region: a white bar at the bottom with dark text
    draw.rectangle((0, bottom + 4, SIZE - 1, SIZE - 1), fill=(255, 255, 255))
    font = _font(11)
    for i, line in enumerate(_wrap(caption.strip("\u201c\u201d\"'"), 40)[:3]):
        draw.text((6, bottom + 7 + 13 * i), line, fill=(0, 0, 0), font=font)
    if template:
        draw.text((6, 12), scene["subject"].upper(), fill=(0, 0, 0), font=_font(14))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def blank_png(value: int = 255) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def make_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """Index rows in the released schema, plus the private scene parameters used to draw them."""
    rng = random.Random(seed)
    rows = []
    next_id = rng.randint(1, 9)
    for i in range(n):
        det = _pick(rng, EMOTION_WEIGHTS) if i >= 4 else ("sad", "tense", "angry", "bored")[i]
        tgt = TARGET_OF[det]
        s = rng.choice(SITUATIONS)
        subject = rng.choice(SUBJECTS)
        polarity = _pick(rng, POLARITIES)
        if polarity == "Negative":
            text = rng.choice(NEG_TEXT[det]).format(s=s)
        elif polarity == "Neutral":
            text = rng.choice(NEUTRAL_TEXT).format(s=s)
        else:
            text = rng.choice(POSITIVE_SURFACE).format(s=s)
        vt = _pick(rng, VISUAL_TYPES)
        layout = "MultiPanel_Meme" if rng.random() < 0.2 else "SinglePanel_Meme"
        row = {
            "id": f"{next_id}.png",
            "gen_id": f"{next_id}.png",
            "det_emo": det,
            "tgt_emo": tgt,
            "img_desc": (
                f"Visual cues: a {subject} with a {'flat' if det == 'bored' else 'downturned'} mouth in a "
                f"{'dull grey' if det == 'bored' else 'dark, cool'} scene about the {s}. "
                f"Text cues: the caption '{text}' frames the {s} as {det}."
            ),
            "text": text,
            "pos_txt": rng.choice(POS_TXT[tgt]).format(s=s),
            "spec": (
                f"Change the {subject}'s expression to a clear smile, relax the posture, switch to warm and "
                f"bright lighting and colours so the scene reads as {tgt}; keep the {s} scenario, the "
                f"props and the panel layout."
            ),
            "visual_type": vt,
            "sentiment_polarity": polarity,
            "layout_type": layout,
            "_scene": {"seed": rng.randrange(1 << 30), "subject": subject, "det_emo": det, "tgt_emo": tgt,
                       "visual_type": vt, "layout_type": layout},
        }
        rows.append(row)
        next_id += rng.randint(1, 4)
    return rows


def make_benchmark(out: str | Path, seed: int = 0, n: int = 48, systems: tuple[str, ...] = SYSTEMS) -> dict[str, Any]:
    """Write the embedded benchmark into ``out`` (released layout); return a summary."""
    out = Path(out)
    rows = make_rows(n, seed)
    for sub in (out / ORIGINAL, out / EDITED):
        if sub.exists():
            shutil.rmtree(sub)
    captions: dict[str, list[str]] = {s: [] for s in systems}
    for row in rows:
        scene = row["_scene"]
        src = render_meme(scene, "neg", row["text"])
        atomic_write_bytes(out / ORIGINAL / row["id"], src)
        for system in systems:
            target = out / EDITED / system / row["gen_id"]
            if system == "identity":
                data, cap = src, row["text"]
            elif system == "caption-only":
                data, cap = render_meme(scene, "neg", row["pos_txt"]), row["pos_txt"]
            elif system == "full-edit":
                data, cap = render_meme(scene, "pos", row["pos_txt"]), row["pos_txt"]
            elif system == "blank":
                data, cap = blank_png(), None
            else:
                raise ValueError(f"unknown synthetic system {system!r}")
            atomic_write_bytes(target, data)
            if cap is not None:
                captions[system].append(json.dumps({"gen_id": row["gen_id"], "caption": cap}))
    for system, lines in captions.items():
        if lines:
            atomic_write_text(out / EDITED / system / CAPTIONS_FILE, "\n".join(lines) + "\n")
    public = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    atomic_write_json(out / "index_final.json", public)
    truth = {
        "expected_ranking": list(EXPECTED_RANKING),
        "systems": {
            "full-edit": "scene redrawn in the target mood + target caption",
            "caption-only": "source scene, caption replaced by pos_txt",
            "identity": "source image unchanged",
            "blank": "uniform white image",
        },
        "seed": seed,
        "n": n,
    }
    atomic_write_json(out / "ground_truth.json", truth)
    return {"rows": n, "systems": list(systems), "index": "index_final.json", "ground_truth": "ground_truth.json"}
