from setuptools import find_packages, setup

ENVPOOL = (
    "envpool>=1.2.5; platform_system == 'Linux' and platform_machine == 'x86_64' "
    "and python_version >= '3.11'"
)

setup(
    name="machina",
    version="0.3.0",
    description="A PyTorch toolkit for episode-based reinforcement learning",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["machina", "machina.*"]),
    package_data={"machina": ["py.typed"]},
    python_requires=">=3.10",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Typing :: Typed",
    ],
    install_requires=[
        "torch>=2.1",
        "gymnasium>=1.0",
        "numpy>=1.24",
        "cloudpickle>=2.0",
        "pybullet>=3.2",
        "tensorboard>=2.14",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "dev": [
            "pytest>=7",
            "pytest-xdist>=3.5",  # the README's test command runs the files on two processes
            "scipy>=1.10",
            "ruff==0.17.5",
            "nbclient>=0.9",
            "nbformat>=5.9",
            "ipykernel>=6",
            "moviepy>=1.0",
            "pygame>=2.1.3",  # classic-control frames (machina 0.x's take_movie on Pendulum)
            "ray[default]>=2.9",
            "onnx>=1.16",
            "onnxruntime>=1.18",
            "onnxscript>=0.1",
            "minari[hdf5]>=0.5",
            "pandas>=2.0",
            "wandb>=0.17",
            "mlflow>=2.10",
            "mypy>=1.10",
            "psutil>=5",  # the original machina's sampler tests use it to stop their children
            # EpiSampler on envpool's vector environments (tests/test_sampler_vector.py); its
            # wheels are for Linux x86_64 only (1.2.x: Python 3.11+)
            ENVPOOL,
        ],
        "export": ["onnx>=1.16", "onnxruntime>=1.18", "onnxscript>=0.1"],
        "datasets": ["minari[hdf5]>=0.5", "pandas>=2.0"],
        "wandb": ["wandb>=0.17"],
        "mlflow": ["mlflow>=2.10"],
        "ray": ["ray[default]>=2.9"],
        "video": ["moviepy>=1.0", "pygame>=2.1.3"],  # pygame: gymnasium's classic-control frames
        "bench": ["stable-baselines3>=2.4", "cpprb>=10"],
        "envpool": [ENVPOOL],
    },
)
