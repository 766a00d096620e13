from pathlib import Path

from setuptools import find_packages, setup


def runtime_requirements() -> list[str]:
    """The pins of requirements.txt above its '# tests' section."""
    lines = Path(__file__).with_name("requirements.txt").read_text().splitlines()
    section = lines[: lines.index("# tests")] if "# tests" in lines else lines
    return [line for line in section if line and not line.startswith("#")]


setup(
    name="lst_train",
    version="0.1.0",
    description="Pretraining Latent Speech-Text Transformers on FSDP2",
    python_requires=">=3.11",
    package_dir={"": "src", "lst_kernels": "kernels"},
    packages=find_packages("src") + ["lst_kernels"],
    install_requires=runtime_requirements(),
    entry_points={"console_scripts": ["lst-train = lst_train.cli:main"]},
)
