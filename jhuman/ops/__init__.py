"""Pure jax.numpy kernels (no flax, no I/O), grouped by who uses them.

Shared by several papers, at the top: `image` (bilinear resizing on the logit grid and with aligned corners,
bilinear sampling of dense fields at points). A paper's own kernels: one file where it needs one (`ssl`, LIP's
self-supervised structure-sensitive loss), a folder where it needs several (`personlab/`, PersonLab's targets,
losses, offset refinement, Hough voting, grouping and decoder). A plain numpy reference sits beside the kernels it
checks (`ssl_reference`, `personlab/reference.py`), for tests and benchmarks only.
"""
