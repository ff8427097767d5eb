"""unseg-extract: datasets on disk + official DINO / DINOv2 checkpoints -> unseg feature stores.

Modules: ``datasets`` (the dataset layouts), ``preprocess`` (resize, crop, normalise),
``models`` (the ViT backbones), ``augment`` (photometric views), ``boxes`` (box annotations),
``store`` (the HDF5 writer), ``extract`` (the loop), ``cli`` (the command line).
"""

__version__ = "0.1.0"
