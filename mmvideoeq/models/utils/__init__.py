"""Pure-PyTorch helpers of the models (no registry): Panoptic-DeepLab targets and grouping,
ViP-DeepLab video stitching."""
