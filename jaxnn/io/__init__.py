"""Files: atomic writes, the workdir and its lock, checkpoints, the best-member export, transfer."""
