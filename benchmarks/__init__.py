"""Benchmarks of FetalHeadSeg (not tests): each prints ratios measured in one run."""
