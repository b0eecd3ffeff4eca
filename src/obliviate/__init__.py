"""obliviate: make trained PyTorch models forget."""
