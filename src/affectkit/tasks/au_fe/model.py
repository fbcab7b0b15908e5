"""SSM: a shared CLIP visual encoder (with a shared/private MoE patch), an FE temporal head, an AU
local temporal module, Textual Semantic Prototypes and Dynamic Prior Mapping; two logit heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from affectkit.components.hf import local_model_dir, quiet_transformers
from affectkit.core.errors import UsageError
from affectkit.tasks.au_fe import facs
from affectkit.tasks.au_fe.config import AUFEConfig
from affectkit.tasks.au_fe.method_modules import (
    AULocalTemporal,
    DynamicPriorMapping,
    FETemporalHead,
    PairSmoother,
    PromptLearner,
    TemporalSmoother,
    TextTower,
    patch_moe,
)

CLIP_MEAN = (0.4815, 0.4578, 0.4082)
CLIP_STD = (0.2686, 0.2613, 0.2758)


def build_text_tower(spec: str) -> TextTower:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    quiet_transformers()
    if spec == "minilm":
        from affectkit.components.text_encoders import minilm_path

        path = minilm_path()
    else:
        path = local_model_dir(spec, hint="pass a local CLIP or HF text encoder")
    config = AutoConfig.from_pretrained(str(path))
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    if config.model_type in ("clip", "clip_text_model"):
        from transformers import CLIPTextModelWithProjection

        return TextTower(CLIPTextModelWithProjection.from_pretrained(str(path)).eval(), tokenizer, "clip")
    return TextTower(AutoModel.from_pretrained(str(path)).eval(), tokenizer, "mean")


def build_vision_tower(cfg: AUFEConfig, proj_dim: int) -> nn.Module:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    quiet_transformers()
    m = cfg.model
    if m.vision == "tiny":
        config = CLIPVisionConfig(image_size=cfg.data.image_size, patch_size=m.tiny_patch, hidden_size=m.tiny_width,
                                  intermediate_size=4 * m.tiny_width, num_hidden_layers=m.tiny_layers,
                                  num_attention_heads=m.tiny_heads, projection_dim=proj_dim)
        return CLIPVisionModelWithProjection(config)
    path = local_model_dir(m.vision, hint="pass a local CLIP checkpoint directory")
    tower = CLIPVisionModelWithProjection.from_pretrained(str(path))
    if tower.config.projection_dim != proj_dim:
        raise UsageError(f"vision projection ({tower.config.projection_dim}) != text tower output ({proj_dim})",
                         "use the CLIP text tower of the same checkpoint: --set model.text=PATH")
    return tower


def check_config(cfg: AUFEConfig, text_dim: int | None = None) -> None:
    """The ranges that depend on two values, before any work (a UsageError naming the option)."""
    m = cfg.model
    if m.moe_top_k > m.moe_experts:
        raise UsageError(f"model.moe_top_k={m.moe_top_k} is above model.moe_experts={m.moe_experts}",
                         "use at most as many experts per token as there are experts")
    if m.vision == "tiny" and m.tiny_width % m.tiny_heads:
        raise UsageError(f"model.tiny_width={m.tiny_width} is not divisible by model.tiny_heads={m.tiny_heads}")
    if text_dim is None and (not m.use_tsp or m.text == "minilm"):
        text_dim = 384  # the MiniLM tower's width, and the feature width without TSP
    if text_dim is not None:
        for key, heads in (("model.fe_heads", m.fe_heads), ("model.au_heads", m.au_heads)):
            if text_dim % heads:
                raise UsageError(f"{key}={heads} does not divide the feature width {text_dim}",
                                 f"pick a divisor of {text_dim}")


def check_model_paths(cfg: AUFEConfig) -> None:
    """A local vision or text tower the config names is a model directory (a DataError naming it)."""
    m = cfg.model
    if m.vision not in ("tiny", "embedded"):
        local_model_dir(m.vision, hint="model.vision: 'tiny', 'embedded' or a local CLIP checkpoint directory")
    if m.use_tsp and m.text != "minilm":
        local_model_dir(m.text, hint="model.text: 'minilm' or a local CLIP / HF text encoder directory")


class SSM(nn.Module):
    def __init__(self, cfg: AUFEConfig):
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        self.prior = facs.prior(_vocab(cfg.data.au_vocab), _vocab(cfg.data.fe_vocab))
        self.aus, self.expressions = list(self.prior.aus), list(self.prior.expressions)
        n_a, n_c = len(self.aus), len(self.expressions)
        self.use_fe = m.branches in ("both", "fe")
        self.use_au = m.branches in ("both", "au")
        self.use_tsp = m.use_tsp
        self.use_dpm = m.use_tsp and m.use_dpm and m.branches == "both"

        check_config(cfg)
        self.text = build_text_tower(m.text) if self.use_tsp else None
        dim = self.text.out_dim if self.text is not None else 384
        check_config(cfg, dim)
        self.vision = build_vision_tower(cfg, dim)
        width = self.vision.config.hidden_size
        n_blocks = len(self.vision.vision_model.encoder.layers)
        patch_moe(self.vision.vision_model.encoder.layers, min(m.moe_blocks, n_blocks), width,
                  n_experts=m.moe_experts, hidden=m.moe_hidden, top_k=m.moe_top_k, alpha=m.moe_alpha,
                  noise_std=m.moe_noise)
        self.fe_head = FETemporalHead(dim, cfg.data.n_frames, m.fe_heads, m.fe_mlp) if self.use_fe else None
        self.au_temporal = AULocalTemporal(dim, m.au_heads) if self.use_au else None
        self.fe_linear = nn.Linear(dim, n_c) if self.use_fe else None
        self.au_linear = nn.Linear(dim, n_a) if self.use_au else None
        if self.use_tsp:
            self.fe_prompts = PromptLearner(self.text, [facs.expression_descriptor(e, self.prior) for e in self.expressions],
                                            m.n_ctx) if self.use_fe or self.use_dpm else None
            self.au_prompts = PromptLearner(self.text, [facs.au_descriptor(a) for a in self.aus],
                                            m.n_ctx) if self.use_au or self.use_dpm else None
        self.dpm = DynamicPriorMapping(torch.from_numpy(self.prior.matrix()), self.prior.neutral_index) if self.use_dpm else None
        if self.use_au and m.smoothing == "legacy-pair":
            self.smoother = PairSmoother(n_a)
        elif self.use_au and m.smoothing == "temporal5":
            self.smoother = TemporalSmoother(n_a)
        else:
            self.smoother = None

    # ---- pieces ---------------------------------------------------------------------------
    def frame_features(self, clips: torch.Tensor) -> torch.Tensor:
        b, t = clips.shape[:2]
        feats = self.vision(pixel_values=clips.flatten(0, 1)).image_embeds
        return feats.view(b, t, -1)

    def prototypes(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not self.use_tsp:
            return None, None
        t_e = self.fe_prompts(self.text) if self.fe_prompts is not None else None
        t_a = self.au_prompts(self.text) if self.au_prompts is not None else None
        if self.dpm is not None:
            t_e, t_a = self.dpm(t_e, t_a)
        return t_e, t_a

    def _similarity(self, f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        m = self.cfg.model
        return m.proto_scale * (F.normalize(f, dim=-1) @ t.t()) / m.proto_temp

    # ---- forward --------------------------------------------------------------------------
    def forward(self, fe: torch.Tensor | None = None, au: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """fe: [B1, T, 3, H, W] expression clips; au: [B2, T, 3, H, W] AU clips (either may be None)."""
        out: dict[str, torch.Tensor] = {}
        fe = fe if self.use_fe else None
        au = au if self.use_au else None
        clips = [c for c in (fe, au) if c is not None]
        if not clips:
            return out
        feats = self.frame_features(torch.cat(clips, 0))
        f_fe, f_au = (feats[: len(fe)], feats[len(fe):]) if fe is not None else (None, feats)
        t_e, t_a = self.prototypes()
        if fe is not None:
            f_e = self.fe_head(f_fe)
            out["z_e"] = self.fe_linear(f_e)
            if t_e is not None:
                out["s_e"] = self._similarity(f_e, t_e)
                out["z_e"] = out["z_e"] + out["s_e"]
        if au is not None:
            f_a = self.au_temporal(f_au)
            z_a = self.au_linear(f_a)
            if t_a is not None:
                out["s_a"] = self._similarity(f_a, t_a)
                z_a = z_a + out["s_a"]
            out["z_a"] = self.smoother(z_a) if self.smoother is not None else z_a
        return out


def _vocab(name: str):
    """A vocabulary name, or a comma-separated list of AU ids / expressions."""
    if "," in name:
        items = [x.strip() for x in name.split(",")]
        return [int(x) for x in items] if items[0].isdigit() else items
    return name


def parameter_groups(model: SSM, cfg: AUFEConfig) -> list[dict]:
    """Release learning rates: encoder (incl. MoE) lr_encoder, DPM residuals lr_delta, the rest lr_other."""
    enc, delta, other = [], [], []
    model = getattr(model, "ssm", model)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("vision."):
            enc.append(p)
        elif name.startswith("dpm.delta"):
            delta.append(p)
        else:
            other.append(p)
    o = cfg.optim
    groups = [{"params": enc, "lr": o.lr_encoder, "name": "encoder"},
              {"params": delta, "lr": o.lr_delta, "name": "dpm_delta"},
              {"params": other, "lr": o.lr_other, "name": "other"}]
    return [g for g in groups if g["params"]]
