"""Model families and their registry, layers, losses, metrics and optimisers."""
