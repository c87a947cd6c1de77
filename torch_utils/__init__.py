"""PyTorch helpers shared by training, metrics and the tools: persistence, misc, training_stats, ops."""
