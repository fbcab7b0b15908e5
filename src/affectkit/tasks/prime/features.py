"""From a loaded cohort to model inputs: what is fitted on a training fold only (per-feature means
and standard deviations, gene groups), the frozen report encoder (chunk embeddings, computed once
per cohort), and the patient dataset with its collate function.

Vector modalities are standardised with the training fold's mean and standard deviation; a NaN
inside an observed vector (an empty clinical cell) becomes the training mean, i.e. 0 after
standardising. Gene groups come from a gene-set file (GMT, or CSV/TSV gene,set) or, without one,
from k-means of the genes' correlation profiles on the training fold (spec 5.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from affectkit.core.errors import DataError, UsageError

WORDS_PER_CHUNK = 180  # about 256 word pieces of a BERT vocabulary


@dataclass
class Featurizer:
    """Everything fitted on a training fold, saved with a run (``to_state`` / ``from_state``)."""

    modalities: dict[str, str]
    means: dict[str, list[float]] = field(default_factory=dict)
    stds: dict[str, list[float]] = field(default_factory=dict)
    groups: dict[str, list[list[int]]] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    feature_names: dict[str, list[str]] = field(default_factory=dict)

    def specs(self) -> list[Any]:
        from affectkit.tasks.prime.model import ModalitySpec

        return [
            ModalitySpec(name, kind, self.dims[name], self.groups.get(name))
            for name, kind in self.modalities.items()
        ]

    def to_state(self) -> dict[str, Any]:
        return {
            "modalities": self.modalities,
            "means": self.means,
            "stds": self.stds,
            "groups": self.groups,
            "dims": self.dims,
            "feature_names": self.feature_names,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Featurizer:
        return cls(**state)

    def standardise(self, name: str, values: np.ndarray) -> np.ndarray:
        mean, std = np.asarray(self.means[name], np.float32), np.asarray(self.stds[name], np.float32)
        out = (values.astype(np.float32) - mean) / std
        return np.nan_to_num(out, nan=0.0)

    def check_cohort(self, cohort: Any, where: Any) -> None:
        """The cohort must have this featurizer's modalities, kinds and vector features (a run applied
        to other data)."""
        if dict(cohort.modalities) != dict(self.modalities):
            raise DataError(
                where, f"modalities {dict(cohort.modalities)} differ from the run's {dict(self.modalities)}"
            )
        for name, names in self.feature_names.items():
            if list(cohort.feature_names.get(name, [])) != list(names):
                raise DataError(
                    where,
                    f"modality {name}: its features differ from the run's "
                    f"({len(cohort.feature_names.get(name, []))} vs {len(names)})",
                )


def read_gene_sets(path: Path, genes: list[str]) -> list[list[int]]:
    """Groups of gene indices from a GMT file (set, description, genes...) or a CSV/TSV of gene,set
    rows; genes absent from the data are ignored, sets left empty are dropped, and genes in no set
    form one more group."""
    if not path.is_file():
        raise DataError(path, "gene-set file not found")
    index = {g: i for i, g in enumerate(genes)}
    sets: dict[str, list[int]] = {}
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if path.suffix.lower() == ".gmt":
        for n, line in enumerate(text, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                raise DataError(path, f"line {n}: a GMT line needs a name, a description and genes")
            sets[parts[0]] = [index[g] for g in parts[2:] if g in index]
    else:
        sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
        for n, line in enumerate(text, 1):
            parts = [p.strip() for p in line.split(sep)]
            if n == 1 and parts[:2] == ["gene", "set"]:
                continue
            if len(parts) < 2:
                raise DataError(path, f"line {n}: expected gene{sep}set")
            if parts[0] in index:
                sets.setdefault(parts[1], []).append(index[parts[0]])
    groups = [sorted(set(v)) for _, v in sorted(sets.items()) if v]
    covered = {i for g in groups for i in g}
    rest = [i for i in range(len(genes)) if i not in covered]
    if rest:
        groups.append(rest)
    if not groups:
        raise DataError(path, "no gene of the data is in any set")
    return groups


def cluster_genes(values: np.ndarray, n_groups: int, seed: int) -> list[list[int]]:
    """k-means of the genes' correlation profiles (rows of the gene-gene correlation matrix) over the
    training patients; at most one group per gene."""
    d = values.shape[1]
    k = min(n_groups, d)
    if k <= 1:
        return [list(range(d))]
    if k == d:
        return [[i] for i in range(d)]
    from sklearn.cluster import KMeans

    x = np.nan_to_num(values.astype(np.float64))
    std = x.std(0)
    x = (x - x.mean(0)) / np.where(std > 0, std, 1.0)
    corr = np.nan_to_num(x.T @ x / max(1, len(x) - 1))
    labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(corr)
    return [sorted(np.flatnonzero(labels == c).tolist()) for c in range(k) if (labels == c).any()]


def fit_featurizer(
    cohort: Any, train_idx: np.ndarray, cfg: Any, text_dims: dict[str, int], seed: int = 0
) -> Featurizer:
    """Statistics of the training fold's observed patients, per vector modality; bag widths from a
    first bag; text widths from the encoder."""
    from affectkit.tasks.prime.data import load_bag

    feat = Featurizer(modalities=dict(cohort.modalities))
    names = list(cohort.modalities)
    for j, (name, kind) in enumerate(cohort.modalities.items()):
        rows = train_idx[cohort.observed[train_idx, j]]
        if kind == "vector":
            values = cohort.vectors[name][rows]
            if len(values) == 0:
                raise DataError(cohort.root, f"modality {name} is observed for no training patient")
            mean = np.nanmean(values, 0)
            std = np.nanstd(values, 0)
            mean = np.where(np.isfinite(mean), mean, 0.0)
            std = np.where(np.isfinite(std) & (std > 1e-8), std, 1.0)
            feat.means[name], feat.stds[name] = mean.tolist(), std.tolist()
            feat.dims[name] = values.shape[1]
            feat.feature_names[name] = list(cohort.feature_names[name])
            if cfg.model.gene_sets and name == _gene_modality(cohort.modalities):
                feat.groups[name] = read_gene_sets(Path(cfg.model.gene_sets), feat.feature_names[name])
            else:
                feat.groups[name] = cluster_genes(values, cfg.model.gene_groups, seed)
        elif kind == "bag":
            first = next((int(i) for i in np.flatnonzero(cohort.observed[:, j])), None)
            if first is None:
                raise DataError(cohort.root, f"modality {name} is observed for no patient")
            feat.dims[name] = int(load_bag(tuple(cohort.bags[name][first])).shape[1])
        elif kind == "text":
            feat.dims[name] = text_dims[name]
        else:
            raise UsageError(f"data.modalities.{name}: unknown kind {kind!r}", "bag, vector or text")
    del names
    return feat


def _gene_modality(modalities: dict[str, str]) -> str:
    """The vector modality a gene-set file groups: ``rna`` when there is one, else the first vector."""
    if "rna" in modalities:
        return "rna"
    return next((n for n, k in modalities.items() if k == "vector"), "")


def chunk_words(text: str, n_chunks: int) -> list[str]:
    words = re.split(r"\s+", text.strip())
    chunks = [" ".join(words[i : i + WORDS_PER_CHUNK]) for i in range(0, len(words), WORDS_PER_CHUNK)]
    return chunks[:n_chunks] or [""]


class TextEncoder:
    """The frozen report encoder: ``minilm`` (bundled all-MiniLM-L6-v2), ``hashing`` (a hashed bag of
    words, 4,096 features, L2-normalised) or a local Hugging Face model folder (mean pooling)."""

    def __init__(self, spec: str):
        self.spec = spec
        self._encoder: Any = None

    @property
    def dim(self) -> int:
        if self.spec == "hashing":
            return 4096
        return int(self._load().model.config.hidden_size)

    def _load(self) -> Any:
        if self._encoder is None:
            from affectkit.components.text_encoders import SentenceEncoder

            self._encoder = SentenceEncoder(None if self.spec == "minilm" else self.spec)
        return self._encoder

    def encode(self, texts: list[str]) -> np.ndarray:
        if self.spec == "hashing":
            from sklearn.feature_extraction.text import HashingVectorizer

            vec = HashingVectorizer(n_features=4096, alternate_sign=False, norm="l2")
            return vec.transform(texts).toarray().astype(np.float32)
        return self._load().encode(texts).astype(np.float32)


def encode_texts(
    cohort: Any, spec: str, n_chunks: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, int]]:
    """Chunk embeddings ``[n, C, e]`` and chunk masks ``[n, C]`` of every text modality (zeros and
    False where a report is missing), and each modality's embedding width."""
    embs: dict[str, np.ndarray] = {}
    masks: dict[str, np.ndarray] = {}
    dims: dict[str, int] = {}
    names = [n for n, k in cohort.modalities.items() if k == "text"]
    if not names:
        return embs, masks, dims
    encoder = TextEncoder(spec)
    for name in names:
        texts = cohort.texts[name]
        flat: list[str] = []
        where: list[tuple[int, int]] = []
        for i, text in enumerate(texts):
            if text is None:
                continue
            for c, chunk in enumerate(chunk_words(text, n_chunks)):
                flat.append(chunk)
                where.append((i, c))
        dim = encoder.dim
        emb = np.zeros((len(texts), n_chunks, dim), np.float32)
        mask = np.zeros((len(texts), n_chunks), bool)
        if flat:
            vectors = encoder.encode(flat)
            for (i, c), v in zip(where, vectors, strict=True):
                emb[i, c], mask[i, c] = v, True
        embs[name], masks[name], dims[name] = emb, mask, dim
    return embs, masks, dims


@dataclass
class PatientSet:
    """Map-style patients of one split: item ``i`` is the patient ``index[i]`` of the cohort."""

    cohort: Any
    index: np.ndarray
    feat: Featurizer
    text_emb: dict[str, np.ndarray]
    text_mask: dict[str, np.ndarray]
    max_patches: int = 0
    seed: int = 0
    targets: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        from affectkit.tasks.prime.data import load_bag

        p = int(self.index[i])
        item: dict[str, Any] = {"observed": self.cohort.observed[p].copy(), "row": i}
        for j, (name, kind) in enumerate(self.feat.modalities.items()):
            seen = bool(self.cohort.observed[p, j])
            if kind == "vector":
                item[name] = (
                    self.feat.standardise(name, self.cohort.vectors[name][p])
                    if seen
                    else np.zeros(self.feat.dims[name], np.float32)
                )
            elif kind == "text":
                item[name], item[f"{name}:mask"] = self.text_emb[name][p], self.text_mask[name][p]
            else:
                bag = (
                    load_bag(tuple(self.cohort.bags[name][p]))
                    if seen
                    else np.zeros((1, self.feat.dims[name]), np.float32)
                )
                if seen and self.max_patches and len(bag) > self.max_patches:
                    rng = np.random.default_rng((self.seed, p, i))
                    bag = bag[np.sort(rng.choice(len(bag), self.max_patches, replace=False))]
                item[name] = bag
        for key, values in self.targets.items():
            item[key] = values[p]
        return item


class Collate:
    """Stacks patients into the model's batch: bags padded to the longest with a mask."""

    def __init__(self, modalities: dict[str, str]):
        self.modalities = modalities

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        batch: dict[str, Any] = {"observed": torch.from_numpy(np.stack([it["observed"] for it in items]))}
        batch["row"] = torch.tensor([it["row"] for it in items])
        for name, kind in self.modalities.items():
            if kind == "bag":
                longest = max(len(it[name]) for it in items)
                dim = items[0][name].shape[1]
                values = np.zeros((len(items), longest, dim), np.float32)
                mask = np.zeros((len(items), longest), bool)
                for b, it in enumerate(items):
                    values[b, : len(it[name])] = it[name]
                    mask[b, : len(it[name])] = it["observed"][list(self.modalities).index(name)]
                batch[name], batch[f"{name}:mask"] = torch.from_numpy(values), torch.from_numpy(mask)
            else:
                batch[name] = torch.from_numpy(np.stack([it[name] for it in items]).astype(np.float32))
                if kind == "text":
                    batch[f"{name}:mask"] = torch.from_numpy(np.stack([it[f"{name}:mask"] for it in items]))
        for key in items[0]:
            if key.startswith("y:"):
                batch[key] = torch.tensor(np.array([it[key] for it in items]))
        return batch
