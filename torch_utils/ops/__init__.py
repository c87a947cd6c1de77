"""Hot-path ops: each has a pure-PyTorch reference (the ground truth, and the CPU/MPS path) and, for bias_act,
upfirdn2d and filtered_lrelu, a CUDA kernel built just in time. `python -m torch_utils.ops` tells which is used here."""
