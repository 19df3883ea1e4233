"""mier_tf: MIER (Model Identification and Experience Relabeling) in TensorFlow 2.

Mendonca, Geng, Finn, Levine (2020), "Meta-Reinforcement Learning Robust to
Distributional Shift via Model Identification and Experience Relabeling".
"""
import os as _os

# TensorFlow prints CUDA factory lines on CPU-only machines; they are not errors.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
