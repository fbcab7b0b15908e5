"""What SSM is compared against, as config switches on the same model and budget:

- the single-task models (the paper's baselines): the same encoder and head with one branch only,
  trained on one dataset (FE-only on the expression clips, AU-only on the AU clips);
- the ablations of its two transfer modules: joint training without Dynamic Prior Mapping, and
  joint training without Textual Semantic Prototypes.
"""

from __future__ import annotations

# direction (the task whose labels are scarce) -> the override that makes the single-task model
SINGLE_TASK = {"fe": "model.branches=fe", "au": "model.branches=au"}

# joint variants: SSM itself and its ablations
VARIANTS = {"ssm": [], "no-dpm": ["model.use_dpm=false"], "no-tsp": ["model.use_tsp=false"]}
