"""Installs mier_tf. The exact, tested pins are in requirements.txt."""
from setuptools import find_packages, setup

setup(
    name="mier_tf",
    version="0.1.0",
    description=("MIER (Model Identification and Experience Relabeling) meta-RL "
                 "in TensorFlow 2 and TF-Agents"),
    packages=find_packages(include=["mier_tf", "mier_tf.*"]),
    python_requires=">=3.11,<3.12",
    install_requires=[
        "tensorflow>=2.15,<2.16",
        "tensorflow-probability>=0.23,<0.24",
        "tf-agents>=0.19,<0.20",
        "dm-reverb>=0.14,<0.15",
        "gymnasium>=1.0,<2",
        "mujoco>=3.1,<5",
        "gin-config>=0.5,<0.6",
        "numpy>=1.23,<2",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "imageio>=2.14",
    ],
)
