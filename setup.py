"""company-skywalking: a SkyWalking Python agent that speaks sw6 (OAP 6.6.0) and sw8."""

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

PTH = "company_skywalking.pth"  # starts the agent at interpreter start-up when SW_AGENT_AUTOSTART is set


class BuildWithPth(build_py):
    """Also puts ``company_skywalking.pth`` at the root of site-packages (wheels and editable installs)."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / PTH
        self.copy_file(str(HERE / "skywalking" / "bootstrap" / PTH), str(target), preserve_mode=False)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return [*super().get_outputs(include_bytecode), str(Path(self.build_lib) / PTH)]

HERE = Path(__file__).parent
VERSION = "0.1.0"

setup(
    name="company-skywalking",
    version=VERSION,
    description="SkyWalking Python agent with native sw6 (OAP 6.6.0) reporting and Ray support",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.14",
    packages=find_packages(include=["skywalking", "skywalking.*", "sw_python", "sw_python.*"]),
    package_data={"skywalking": ["py.typed", "config.pyi", "bootstrap/loader/sitecustomize.py", f"bootstrap/{PTH}"]},
    install_requires=[
        "grpcio>=1.49",
        "h2>=4.1",  # the collect stream's HTTP/2 connection (skywalking/reporter/h2stream.py)
        "protobuf>=3.20.3",
        "wrapt>=1.14",
        "packaging>=21",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6.80"],
        "lint": ["ruff>=0.6"],
        "kafka": ["kafka-python>=2.0.2"],  # agent_protocol=kafka (skywalking/reporter/kafka.py)
    },
    cmdclass={"build_py": BuildWithPth},
    entry_points={"console_scripts": ["sw-python = skywalking.bootstrap.cli.sw_python:start"]},
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
)
