"""Builds tidewright with its gRPC stubs generated from tidewright's proto files.

The stubs land in ``tidewright/v1`` of the build, never in the sources:
they are made from ``proto/`` of the tidewright repository (or ``$TIDEWRIGHT_PROTO_DIR``)
each time the package is built, so they cannot drift from the API. An sdist
carries the proto file it was made from, so it builds anywhere.
"""

import os
import re
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent


def proto_root() -> Path:
    candidates = [os.environ.get("TIDEWRIGHT_PROTO_DIR"), HERE / "proto", HERE.parent.parent / "proto"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "tidewright" / "v1" / "tidewright.proto").is_file():
            return Path(candidate)
    raise SystemExit(
        "tidewright: tidewright/v1/tidewright.proto not found; build from the tidewright repository "
        "(pip install ./clients/python) or set TIDEWRIGHT_PROTO_DIR"
    )


def generate(out: Path) -> None:
    import grpc_tools
    from grpc_tools import protoc

    root = proto_root() / "tidewright" / "v1"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "grpc_tools.protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        "tidewright.proto",
    ]
    if protoc.main(args) != 0:
        raise SystemExit("tidewright: protoc failed on tidewright.proto")
    # grpc's generator imports the messages as a top-level module; inside
    # this package they are a sibling.
    stubs = out / "tidewright_pb2_grpc.py"
    text = re.sub(r"^import tidewright_pb2 as", "from . import tidewright_pb2 as", stubs.read_text(), flags=re.M)
    stubs.write_text(text)
    (out / "__init__.py").write_text(
        '"""tidewright.v1, generated from proto/tidewright/v1/tidewright.proto at build time."""\n'
        "from .tidewright_pb2 import *  # noqa: F401,F403\n"
        "from .tidewright_pb2_grpc import *  # noqa: F401,F403\n"
    )
    (out / "__init__.pyi").write_text("from .tidewright_pb2 import *\nfrom .tidewright_pb2_grpc import *\n")


class BuildWithStubs(build_py):
    def run(self) -> None:
        super().run()
        generate(Path(self.build_lib) / "tidewright" / "v1")


class SdistWithProto(sdist):
    """Puts the proto file into the sdist's ``proto/``, where
    :func:`proto_root` looks first after ``$TIDEWRIGHT_PROTO_DIR``."""

    def make_release_tree(self, base_dir: str, files: list) -> None:
        super().make_release_tree(base_dir, files)
        into = Path(base_dir) / "proto" / "tidewright" / "v1"
        into.mkdir(parents=True, exist_ok=True)
        shutil.copy2(proto_root() / "tidewright" / "v1" / "tidewright.proto", into / "tidewright.proto")


setup(cmdclass={"build_py": BuildWithStubs, "sdist": SdistWithProto})
