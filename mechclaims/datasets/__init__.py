"""Claim-specific stimuli formats, each validated through mechclaims.datasets.io."""
