"""Bundles libinferbooster.so into the package when one is built: INFERBOOSTER_LIB, else
../build/libinferbooster.so (the project's default build). Without one, the installed
package finds the library at run time (INFERBOOSTER_LIB or the loader's path)."""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithLibrary(build_py):
    def run(self):
        super().run()
        here = os.path.dirname(os.path.abspath(__file__))
        lib = os.environ.get("INFERBOOSTER_LIB") or os.path.join(
            os.path.dirname(here), "build", "libinferbooster.so")
        if os.path.isfile(lib):
            dest = os.path.join(self.build_lib, "inferbooster", "libinferbooster.so")
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(lib, dest)
            os.chmod(dest, 0o755)


setup(
    name="inferbooster",
    version="0.1.0",
    description="ONNX Runtime-compatible sessions and PyTorch / ONNX Runtime interposition "
                "over the InferBooster compiler",
    python_requires=">=3.9",
    install_requires=["numpy"],
    extras_require={"torch": ["torch"]},
    packages=["inferbooster"],
    package_data={"inferbooster": ["libinferbooster.so"]},
    cmdclass={"build_py": BuildPyWithLibrary},
)
