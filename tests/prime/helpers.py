"""Shared by prime's CLI tests."""

# D 8, one layer, hashed reports, a bank of 8: seconds per run
TINY = ["--set", "model.dim=8", "--set", "model.layers=1", "--set", "model.heads=1", "--set", "model.text_encoder=hashing",
        "--set", "model.text_chunks=1", "--set", "bank.size=8", "--set", "bank.topk=2", "--set", "bank.warmup_steps=3",
        "--set", "train.batch_size=32", "--set", "train.warmup_steps=0", "--set", "train.lr=0.003",
        "--set", "model.dropout=0"]
