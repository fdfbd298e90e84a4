"""Data files shipped with edgemnist (MNIST in IDX format), so every command works offline."""
