"""ament_python package that also installs with plain ``pip install -e .``."""
from glob import glob

from setuptools import find_packages, setup

package_name = "ov2_ros"


def _requirements(path: str) -> list[str]:
    with open(path) as fh:
        return [ln.split("#")[0].strip() for ln in fh if ln.split("#")[0].strip()]


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "bench"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py") + glob("launch/*.xml")),
        ("share/" + package_name + "/config", glob("config/*.yaml")),
        ("share/" + package_name + "/models", glob("models/*.md") + glob("models/*.json")),
        ("share/" + package_name + "/models/tiny-random", glob("models/tiny-random/*")),
        ("share/" + package_name + "/models/llava-onevision-2-8b-instruct",
         glob("models/llava-onevision-2-8b-instruct/*")),
    ],
    install_requires=["setuptools"] + _requirements("requirements.txt"),
    # serve: the Ray Serve deployment (ov2-ros serve, backend ray through a DeploymentHandle). Robots that only
    # post to Serve's HTTP endpoint need none of it.
    # quant: weight-only int8/int4 (ov2_ros.model.quantize), torchao built for the installed torch.
    extras_require={"test": _requirements("requirements-dev.txt"), "serve": ["ray[serve]>=2.60"],
                    "quant": ["torchao>=0.18"]},
    python_requires=">=3.10",
    zip_safe=True,
    maintainer="ov2_ros maintainers",
    maintainer_email="maintainers@ov2-ros.dev",
    description="Language-grounded video perception for ROS 2 with LLaVA-OneVision-2 and codec-stream tokens.",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "ov2-ros = ov2_ros.cli:main",
            "ov2_node = ov2_ros.ros.node:main",
            "h264_encoder_node = ov2_ros.ros.encoder_node:main",
        ],
    },
)
