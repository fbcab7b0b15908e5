"""Task ``tqd`` (in progress, not yet registered): timestep-aware quality decoupling for video
diffusion training (arXiv 2603.25527; spec 6-7). Landed so far: the timestep samplers in one noise-level
convention with the diffusers conversions (``method_sampler``), the video scorer and typer writing
Open-Sora meta CSVs (``scoring``), and the seeded procedural video generator (``synth``)."""
