"""Judging a topology: scores against the ground truth, the peer baseline (Makris, Ellis &
Black), pictures of the topology."""
