"""Training methods: each module provides init / train_step / predict (see jsr/train.py)."""
