"""murmur's own text embedder: pairs from the network's posts, contrastive training on the one trainer."""
