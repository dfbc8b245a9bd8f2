"""machina: a PyTorch toolkit for episode-based reinforcement learning."""
