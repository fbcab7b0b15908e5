"""Configuration of task ``prime``: the dataset (manifest, modalities, endpoints, folds), the model
(tokenisers, the shared prototype bank, the fusion transformer), label-free pretraining and the
downstream stage (spec 5). Only the abstract of PRIME is public: every inferred choice is a key here,
and docs/tasks/prime.md says which."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from affectkit.core.config import TrainConfig, help_field
from affectkit.core.task import MetricSpec

# the first selects the best downstream checkpoint (on the fold's validation patients)
METRICS = (
    MetricSpec("c_index", True, "Harrell's C-index (lifelines / scikit-survival definition)"),
    MetricSpec("uno_c", True, "Uno's IPCW C-index (scikit-survival definition)"),
    MetricSpec("ibs", False, "integrated Brier score over the test follow-up (scikit-survival definition)"),
    MetricSpec("auroc", True, "AUROC of the horizon label (censored before the horizon: excluded)"),
)
KINDS = ("bag", "vector", "text")
FILLS = ("bank", "zero", "mean", "learned")


@dataclass
class DataConfig:
    manifest: str = help_field("", "manifest file under --data ('' = manifest.csv/.tsv/.yaml found there)")
    modalities: dict[str, str] = help_field(
        {"wsi": "bag", "rna": "vector", "report": "text"},
        "modality name -> kind (bag: WSI feature files; vector: genes or other numbers; text: report);\n"
        "each name is a manifest column",
    )
    matrices: dict[str, str] = help_field(
        {},
        "vector modality -> expression matrix file (TSV/CSV/parquet); the\n"
        "manifest cell then holds the sample id",
    )
    columns: dict[str, str] = help_field(
        {}, "vector modality -> comma-separated manifest columns holding it inline"
    )
    endpoints: dict[str, str] = help_field(
        {"os": "os_time,os_event"}, "endpoint name -> 'time column,event column' (days; event 0/1)"
    )
    orientation: Literal["auto", "genes_x_samples", "samples_x_genes"] = help_field(
        "auto", "layout of expression matrices (auto: where the sample ids are found)"
    )
    log2p1: bool = help_field(False, "apply log2(x+1) to expression values (TPM / RSEM as released)")
    clinical: str = help_field(
        "",
        "TCGA clinical table (GDC clinical.tsv, legacy patient file or TCGA-CDR)\n"
        "whose survival endpoints fill the manifest's missing endpoint columns",
    )
    folds: int = help_field(5, "cross-validation folds (the manifest's fold column wins when present)", min=2)
    fold: int = help_field(-1, "train / evaluate this fold only (-1: every fold in turn)", min=-1)
    missing: str = help_field(
        "",
        "drop modalities by a pattern before training (complete, mcar30, mcar50,\n"
        "mcar70, site, mnar, nopairs; '' = as the manifest says)",
    )
    valid_fraction: float = help_field(
        0.15, "share of each training fold held out to select the best step", min=0.0, max=0.5
    )


@dataclass
class ModelConfig:
    dim: int = help_field(256, "token width D of the unified token space (spec: 256)", min=4)
    layers: int = help_field(4, "fusion transformer layers (spec: 4)", min=1)
    heads: int = help_field(8, "attention heads of the fusion transformer (spec: 8)", min=1)
    dropout: float = help_field(0.1, "dropout in the tokenisers and the fusion transformer", min=0.0, max=0.9)
    bag_pooling: Literal["abmil", "query"] = help_field(
        "abmil", "WSI bag -> tokens: gated attention MIL (one token) or learned-query pooling"
    )
    bag_queries: int = help_field(8, "query pooling: tokens per bag", min=1)
    max_patches: int = help_field(4096, "patches sampled per bag while training (0: all)", min=0)
    gene_groups: int = help_field(
        6,
        "gene-group tokens when no gene-set file is given (k-means clusters of\n"
        "gene-gene correlation on the training fold; MCAT: 6 families)",
        min=1,
    )
    gene_sets: str = help_field("", "gene-set file (GMT, or CSV/TSV gene,set) grouping the genes of `rna`")
    text_encoder: str = help_field(
        "minilm",
        "frozen report encoder: minilm (bundled all-MiniLM-L6-v2), hashing\n"
        "(hashed bag of words), or a local Hugging Face model folder",
    )
    text_chunks: int = help_field(4, "report chunks of up to 256 word pieces, one token each", min=1)
    fill: Literal["bank", "zero", "mean", "learned"] = help_field(
        "bank",
        "missing modalities: bank (PRIME: consensus retrieval from the prototype bank), zero, mean\n"
        "(training mean of the modality's tokens) or learned (a mask token per modality)",
    )


@dataclass
class BankConfig:
    size: int = help_field(64, "prototypes K (spec: 64 for small cohorts, 256-512 pan-cancer)", min=1)
    update: Literal["ema", "grad"] = help_field(
        "ema", "prototype updates: EMA of assigned embeddings, or gradient"
    )
    decay: float = help_field(0.99, "EMA decay of prototype keys, values and counts", min=0.0, max=1.0)
    topk: int = help_field(8, "prototypes retrieved per patient", min=1)
    tau: float = help_field(
        0.1, "softmax temperature over the retrieved prototypes' consensus scores", min=1e-4
    )
    consensus: Literal["mean", "poe"] = help_field(
        "mean",
        "patient-level consensus: mean cosine over the observed modalities, or product of experts\n"
        "(sum of log-softmax)",
    )
    dead_after: float = help_field(1e-3, "a prototype whose EMA count falls below this is reset", min=0.0)
    init: Literal["kmeans", "random"] = help_field(
        "kmeans",
        "initialise the keys by k-means of the first\n"
        "embeddings (sklearn, n_init 10) or from random patients",
    )
    warmup_steps: int = help_field(20, "alignment-only steps before the bank is initialised and used", min=0)
    grad_through: bool = help_field(True, "gradients reach the tokenisers through the retrieval weights")


@dataclass
class PretrainConfig:
    align_weight: float = help_field(
        1.0, "weight of the inter-modality alignment (pairwise InfoNCE)", min=0.0
    )
    tau: float = help_field(0.07, "initial alignment temperature (CLIP: 0.07)", min=1e-4)
    learn_tau: bool = help_field(True, "learn the alignment temperature (logit scale clamped at 100)")
    impute_weight: float = help_field(
        0.5, "weight of the imputation alignment (retrieved vs real summary)", min=0.0
    )
    consistency_weight: float = help_field(
        1.0, "weight of the post-fusion consistency under missingness", min=0.0
    )
    consistency: Literal["infonce", "simsiam"] = help_field(
        "infonce", "consistency objective between the\nfull view and a structured-missingness view"
    )
    consistency_tau: float = help_field(0.1, "temperature of the consistency InfoNCE", min=1e-4)
    empirical_mix: float = help_field(
        0.5,
        "share of dropped views drawn from the cohort's availability patterns\n"
        "(the rest: uniform over non-empty subsets of the observed set)",
        min=0.0,
        max=1.0,
    )
    token_drop: float = help_field(
        0.3, "max share of a modality's tokens masked in the augmented view", min=0.0, max=0.9
    )


@dataclass
class FinetuneConfig:
    endpoint: str = help_field("", "endpoint to predict ('' = the first of data.endpoints)")
    target: Literal["survival", "horizon"] = help_field(
        "survival", "survival: a survival head (C-index); horizon: a binary label at horizon_days (AUROC)"
    )
    head: Literal["nll", "cox"] = help_field(
        "nll", "survival head: discrete-time NLL over quantile bins, or Cox"
    )
    bins: int = help_field(
        4, "NLL head: time bins (quartiles of the fold's event times, MCAT/SurvPath)", min=2
    )
    alpha: float = help_field(
        0.0, "NLL head: extra weight on the uncensored term (SurvPath: 0)", min=0.0, max=1.0
    )
    horizon_days: float = help_field(
        1095.75, "horizon of the binary labels (3 years of 365.25 days)", min=1.0
    )
    mode: Literal["linear", "lora", "full"] = help_field(
        "full",
        "linear: frozen encoder, head only; lora: LoRA (peft) on the fusion attention; full: all weights",
    )
    lora_r: int = help_field(8, "LoRA rank", min=1)
    lora_alpha: float = help_field(16.0, "LoRA alpha", min=0.0)
    label_fraction: float = help_field(
        1.0, "share of the training fold's labels used (stratified on event)", min=0.01, max=1.0
    )
    modality_dropout: float = help_field(
        0.0,
        "drop each observed modality with this probability while training\n"
        "(the modality-dropout baseline; at least one is kept)",
        min=0.0,
        max=0.95,
    )
    init: str = help_field(
        "",
        "pretraining run whose encoder (and bank) the downstream stage starts from\n"
        "('' = from scratch: the supervised baselines)",
    )


def _train_defaults() -> TrainConfig:
    # spec 5.5: AdamW lr 1e-4, weight decay 5e-2 for small cohorts, cosine with 5 % warm-up
    return TrainConfig(
        max_steps=1000,
        batch_size=64,
        lr=1e-4,
        weight_decay=0.05,
        warmup_steps=50,
        schedule="cosine",
        eval_every=100,
        checkpoint_every=100,
        log_every=20,
    )


@dataclass
class PrimeConfig:
    stage: Literal["pretrain", "finetune"] = help_field(
        "pretrain", "pretrain: label-free pretraining on the training folds; finetune: the downstream stage"
    )
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    bank: BankConfig = field(default_factory=BankConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
