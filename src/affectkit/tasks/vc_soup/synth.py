"""The embedded benchmark: seeded synthetic preference data whose values conflict (or agree) by design.

Responses are a tone phrase (positive / neutral / negative, 6 words) followed by a topic sentence
(8 words) about the prompt's topic or another one. Two values are scored by real offline reward
backends: ``positivity`` = VADER compound of the response, ``relevance`` = MiniLM cosine between
prompt and response. A candidate's tone and topicality are drawn from a latent pair with correlation
``rho``: rho < 0 makes cheerful answers tend to be off-topic (conflicting values), rho > 0 makes them
agree. Value-k pairs are labelled by reward k (margin on the z-scored gap), then flipped with
probability ``noise``. The flip flags, true gaps and the measured reward correlation are the known
ground truth (``truth.json``).

Files per setting (canonical records, rewards as ``filter-prefs`` writes them):
``{value}_train.jsonl``, ``sft.jsonl`` (reference warm-up), ``eval_prompts.jsonl`` (held-out prompts
with their candidate responses and rewards), ``truth.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.runs import atomic_write_json, atomic_write_text

VALUES = ("positivity", "relevance")
BACKENDS = {"positivity": "vader", "relevance": "minilm-relevance"}

TONES = {
    "pos": ("i really love this lovely topic", "what a wonderful and happy question", "this is great fun and joy"),
    "neu": ("here is a plain short answer", "let me answer this one now", "this is my reply to you"),
    "neg": ("i really hate this awful topic", "what a terrible and sad question", "this is bad boring and ugly"),
}
TOPICS = {
    "cooking": ("cooking uses heat to change raw food slowly", "a cook mixes flour and water for cooking"),
    "football": ("football is played by two teams on grass", "in football players kick a ball toward goals"),
    "music": ("music is made of notes rhythm and melody", "people play music with drums pianos and guitars"),
    "gardening": ("gardening means planting seeds and watering the soil", "in gardening you trim plants and pull weeds"),
    "astronomy": ("astronomy studies the stars planets and distant galaxies", "in astronomy telescopes collect light from the sky"),
    "travel": ("travel means going to new cities by train", "for travel people pack bags and book rooms"),
    "painting": ("painting puts colors on canvas with a brush", "in painting artists mix pigments with oil paint"),
    "chess": ("chess is played on a board of squares", "in chess players move kings queens and pawns"),
    "coffee": ("coffee is brewed from roasted beans and water", "people drink coffee hot or cold each morning"),
    "hiking": ("hiking means walking on trails through the hills", "for hiking people carry water maps and boots"),
    "photography": ("photography records light with a camera and lens", "in photography the shutter speed controls the exposure"),
    "programming": ("programming means writing code that computers can run", "in programming people use loops functions and variables"),
}
TRAIN_TEMPLATES = ("tell me about {t}", "what do you know about {t}", "say something about {t}", "can you describe {t}")
EVAL_TEMPLATES = ("i want to hear about {t}", "talk to me about {t}")
SETTINGS = {"conflicting": -0.7, "aligned": 0.7}


@dataclass
class SynthConfig:
    rho: float = -0.7
    noise: float = 0.1
    n_pairs: int = 1200
    n_sft: int = 3000
    margin: float = 0.25
    n_off_eval: int = 2


def responses() -> list[tuple[str, str, str]]:
    """Every response as (text, tone class, topic)."""
    out = []
    for tone, phrases in TONES.items():
        for ph in phrases:
            for topic, sents in TOPICS.items():
                for s in sents:
                    out.append((f"{ph} {s}", tone, topic))
    return out


def vocabulary() -> list[str]:
    words: set[str] = set()
    for phrases in TONES.values():
        for p in phrases:
            words.update(p.split())
    for t, sents in TOPICS.items():
        words.add(t)
        for s in sents:
            words.update(s.split())
    for tpl in TRAIN_TEMPLATES + EVAL_TEMPLATES:
        words.update(tpl.replace("{t}", "").split())
    return sorted(words)


def score_pool(prompts: list[str], resp: list[str]) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """Positivity per response and relevance per (prompt, response), with the real backends."""
    from affectkit.tasks.vc_soup.rewards import make_scorer

    vader = make_scorer("vader")
    rel = make_scorer("minilm-relevance")
    pos = dict(zip(resp, vader([""] * len(resp), resp), strict=True))
    pp = [p for p in prompts for _ in resp]
    rr = [r for _ in prompts for r in resp]
    relv = rel(pp, rr)
    return pos, {(p, r): float(v) for p, r, v in zip(pp, rr, relv, strict=True)}


def _tone_of(a: float) -> str:
    return "neg" if a < -0.4307 else ("pos" if a > 0.4307 else "neu")  # terciles of N(0, 1)


def make_setting(out: Path, seed: int, cfg: SynthConfig, pool_scores: tuple[dict, dict] | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    topics = list(TOPICS)
    train_prompts = [(tpl.format(t=t), t) for t in topics for tpl in TRAIN_TEMPLATES]
    eval_prompts = [(tpl.format(t=t), t) for t in topics for tpl in EVAL_TEMPLATES]
    pool = responses()
    texts = [r[0] for r in pool]
    if pool_scores is None:
        pool_scores = score_pool([p for p, _ in train_prompts + eval_prompts], texts)
    pos, rel = pool_scores

    def rewards(prompt: str, resp: str) -> dict[str, float]:
        return {"positivity": pos[resp], "relevance": rel[(prompt, resp)]}

    # pooled normalisation constants of the training pool (for margins and for comparable fronts)
    allp = np.array([pos[r] for r in texts])
    allr = np.array([rel[(p, r)] for p, _ in train_prompts for r in texts])
    norm = {"positivity": (float(allp.mean()), float(allp.std())), "relevance": (float(allr.mean()), float(allr.std()))}

    def sample(prompt_topic: str) -> str:
        a, b = rng.multivariate_normal([0, 0], [[1, cfg.rho], [cfg.rho, 1]])
        tone = _tone_of(a)
        phrase = TONES[tone][rng.integers(3)]
        if b > 0:
            sent = TOPICS[prompt_topic][rng.integers(2)]
        else:
            other = [t for t in topics if t != prompt_topic][rng.integers(len(topics) - 1)]
            sent = TOPICS[other][rng.integers(2)]
        return f"{phrase} {sent}"

    truth: dict[str, Any] = {"rho": cfg.rho, "noise": cfg.noise, "margin_z": cfg.margin, "values": list(VALUES),
                             "backends": BACKENDS, "reward_norm": norm, "datasets": {}}
    sampled_pairs = []
    for value in VALUES:
        rows, flips, true_consistent = [], 0, 0
        mu, sd = norm[value]
        i = 0
        while len(rows) < cfg.n_pairs:
            prompt, topic = train_prompts[rng.integers(len(train_prompts))]
            y1, y2 = sample(topic), sample(topic)
            r1, r2 = rewards(prompt, y1), rewards(prompt, y2)
            sampled_pairs.append((r1, r2))
            if abs(r1[value] - r2[value]) / sd < cfg.margin:
                continue
            w, lo = (y1, y2) if r1[value] > r2[value] else (y2, y1)
            rw, rl = (r1, r2) if r1[value] > r2[value] else (r2, r1)
            other = [v for v in VALUES if v != value][0]
            true_consistent += int((rw[other] - rl[other]) >= 0)
            flipped = bool(rng.random() < cfg.noise)
            if flipped:
                w, lo, rw, rl = lo, w, rl, rw
                flips += 1
            rows.append({"id": f"{value}-{i}", "prompt": prompt, "chosen": w, "rejected": lo, "value": value,
                         "rewards_chosen": rw, "rewards_rejected": rl, "label_flipped": flipped})
            i += 1
        atomic_write_text(out / f"{value}_train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        truth["datasets"][value] = {"n": len(rows), "flipped": flips, "share_other_value_agrees": true_consistent / len(rows)}

    a = np.array([[p[0]["positivity"], p[0]["relevance"]] for p in sampled_pairs] + [[p[1]["positivity"], p[1]["relevance"]] for p in sampled_pairs])
    truth["reward_correlation"] = float(np.corrcoef(a[:, 0], a[:, 1])[0, 1])

    sft = []
    for j in range(cfg.n_sft):
        prompt, _ = train_prompts[rng.integers(len(train_prompts))]
        sft.append({"id": f"sft-{j}", "prompt": prompt, "response": texts[rng.integers(len(texts))]})
    atomic_write_text(out / "sft.jsonl", "".join(json.dumps(r) + "\n" for r in sft))

    evals = []
    for prompt, topic in eval_prompts:
        others = [t for t in topics if t != topic]
        off = [others[(topics.index(topic) + 3 * k) % len(others)] for k in range(1, cfg.n_off_eval + 1)]
        sents = list(TOPICS[topic]) + [TOPICS[o][0] for o in off]
        cands = [f"{ph} {s}" for tone in TONES for ph in TONES[tone] for s in sents]
        evals.append({"prompt": prompt, "topic": topic, "candidates": cands,
                      "rewards": {v: [rewards(prompt, c)[v] for c in cands] for v in VALUES}})
    atomic_write_text(out / "eval_prompts.jsonl", "".join(json.dumps(r) + "\n" for r in evals))
    atomic_write_json(out / "truth.json", truth)
    return {"setting": out.name, "rho": cfg.rho, "reward_correlation": truth["reward_correlation"],
            "pairs_per_value": cfg.n_pairs, "eval_prompts": len(evals)}


def make_benchmark(out: Path, seed: int, quick: bool) -> dict[str, Any]:
    """Both settings (conflicting, aligned) under ``out``; the reward pool is scored once."""
    train_prompts = [tpl.format(t=t) for t in TOPICS for tpl in TRAIN_TEMPLATES + EVAL_TEMPLATES]
    scores = score_pool(train_prompts, [r[0] for r in responses()])
    summary = {}
    for name, rho in SETTINGS.items():
        cfg = SynthConfig(rho=rho, n_pairs=500 if quick else 1200, n_sft=1500 if quick else 3000)
        summary[name] = make_setting(Path(out) / name, seed, cfg, scores)
    return summary
