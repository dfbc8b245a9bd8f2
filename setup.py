from setuptools import find_packages, setup

setup(
    name="machina",
    version="0.3.0",
    description="A PyTorch toolkit for episode-based reinforcement learning",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["machina", "machina.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "gymnasium>=1.0",
        "numpy>=1.24",
        "cloudpickle>=2.0",
        "pybullet>=3.2",
        "tensorboard>=2.14",
        "matplotlib>=3.7",
        "tqdm>=4.60",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "scipy>=1.10",
            "ruff==0.17.5",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6",
            "moviepy>=1.0",
            "ray[default]>=2.9",
        ],
        "ray": ["ray[default]>=2.9"],
        "video": ["moviepy>=1.0"],
        "bench": ["stable-baselines3>=2.4"],
    },
)
