"""ssvrl: self-supervised video representation learning (CVRL, TEG, MCL, FAME, SVT)."""

__version__ = "0.1.0"
